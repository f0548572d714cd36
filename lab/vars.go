package lab

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// WriteVars writes the lab's vars as a YAML vars file for `opsdrill run
// --vars`, readable only by its owner since it holds credentials.
func (l *Lab) WriteVars(path string) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by `opsdrill lab up` for lab %s (environments: %s) on %s.\n",
		l.ID, strings.Join(l.Envs, ", "), l.Created.Format(time.RFC3339))
	fmt.Fprintf(&b, "# Use it with: opsdrill run --vars %s SCENARIO...\n", path)
	fmt.Fprintf(&b, "# Values under %q are credentials; the runner redacts them everywhere.\n", SecretsKey)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(l.vars); err != nil {
		return fmt.Errorf("encode lab vars: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encode lab vars: %w", err)
	}
	if err := writeFileAtomic(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write lab vars: %w", err)
	}
	return nil
}
