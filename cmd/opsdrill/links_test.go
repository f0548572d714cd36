package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLabDriversLinked: the binary links what the lab registers from its
// own packages (steps/ never imports the lab): driver: lab and its checks.
// Dropping the link makes validate refuse them. The lab's RDS API is a
// service of the lab reached by URL: the in-process lab: scheme is gone.
func TestLabDriversLinked(t *testing.T) {
	cases := []struct {
		name string
		with string
		code int
		want string
	}{
		{"the lab failover driver", "{ driver: lab, action: partition, fence: false }", 0, ""},
		{"its parameters checked by the lab", "{ driver: lab, action: reboot }", 2, "action: must be one of kill, partition, switchover"},
		{"the lab's RDS API, by its URL", "{ driver: aws-rds, instance: testrds, endpoint_url: 'http://10.0.0.2:8080' }", 0, ""},
		{"no in-process lab: endpoint", "{ driver: aws-rds, instance: testrds, endpoint_url: 'lab:abc123' }", 2, `endpoint_url: expected http(s)://host[:port], got "lab:abc123"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "failover.yaml")
			require.NoError(t, os.WriteFile(path, []byte("steps:\n  - uses: db.failover\n    with: "+tc.with+"\n"), 0o644))
			r := opsdrill(t, "validate", path)
			assert.Equal(t, tc.code, r.code, r.stderr)
			if tc.want != "" {
				assert.Contains(t, r.stderr, tc.want)
			}
		})
	}
}
