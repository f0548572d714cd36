package lab

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runRemoteLine runs remoteLine(c) the way the ops user's login shell does
// over SSH, with a sudo on PATH that runs its arguments after -n (the lab
// hosts' sudo is passwordless for ops), the prelude and c.Stdin on stdin.
func runRemoteLine(t *testing.T, c Command) (string, string) {
	t.Helper()
	bin := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, "sudo"), []byte("#!/bin/sh\n[ \"$1\" = -n ] && shift\nexec \"$@\"\n"), 0o755))
	line := remoteLine(c)
	stdin := c.Stdin
	if len(c.Env) > 0 {
		prelude, err := envPrelude(c.Env)
		require.NoError(t, err)
		stdin = append(prelude, c.Stdin...)
	}
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	cmd.Stdin = bytes.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	require.NoError(t, cmd.Run(), "line: %s", line)
	return line, out.String()
}

func TestRemoteLineKeepsEnvOffTheCommandLine(t *testing.T) {
	const secret = "s3cr3t 'quoted' $HOME value"
	line, out := runRemoteLine(t, Command{
		Args:  []string{"sh", "-c", `printf '%s|%s|' "$OPSDRILL_T_SECRET" "$OPSDRILL_T_OTHER"; cat`},
		Env:   []string{"OPSDRILL_T_SECRET=" + secret, "OPSDRILL_T_OTHER=b=c"},
		Stdin: []byte("the command's own stdin\nsecond line\n"),
	})
	assert.Equal(t, secret+"|b=c|the command's own stdin\nsecond line\n", out)
	assert.NotContains(t, line, "s3cr3t")
}

func TestRemoteLineDetachedGetsItsEnv(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "env")
	line, _ := runRemoteLine(t, Command{
		Args:   []string{"sh", "-c", `printf '%s' "$OPSDRILL_T_SECRET" > "$0.tmp" && mv "$0.tmp" "$0"`, marker},
		Env:    []string{"OPSDRILL_T_SECRET=detached-secret"},
		Detach: true,
	})
	assert.NotContains(t, line, "detached-secret")
	var got []byte
	require.Eventually(t, func() bool {
		var err error
		got, err = os.ReadFile(marker)
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, "detached-secret", string(got))
}

func TestRemoteLineWithoutEnv(t *testing.T) {
	line, out := runRemoteLine(t, Command{Args: []string{"sh", "-c", "cat; echo done"}, Stdin: []byte("x\n")})
	assert.Equal(t, "x\ndone\n", out)
	assert.True(t, strings.HasPrefix(line, "sudo -n sh -c "), line)
}

func TestEnvPreludeRefusesMultiLineValues(t *testing.T) {
	for _, kv := range []string{"K=a\nb", "noequals", "=v", "K=a\x00b"} {
		_, err := envPrelude([]string{kv})
		assert.Error(t, err, "%q", kv)
	}
}
