package command

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/host"
	"github.com/opsdrill/opsdrill/steps/host/sshtest"
)

// runOn runs e with its host: resolved through a pool of the test's own.
func runOn(t *testing.T, p *host.Pool, e *Exec) (map[string]any, error) {
	t.Helper()
	require.NoError(t, e.Validate())
	env := steps.NewEnv("s", "x", t.TempDir(), steps.Hooks{})
	err := e.Run(host.WithPool(context.Background(), p), env)
	return env.Outputs(), err
}

func TestExecOnSSHHost(t *testing.T) {
	s := sshtest.Start(t)
	p := &host.Pool{SSHConfig: s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})}
	t.Cleanup(func() { _ = p.Close() })
	dir := t.TempDir()

	out, err := runOn(t, p, &Exec{Host: "ssh://box", Shell: "sh", Script: "pwd; echo $GREETING; cat; echo err >&2",
		Env: map[string]string{"GREETING": "hi"}, Stdin: "piped", Dir: dir, ExitCodes: []int{0}})
	require.NoError(t, err)
	assert.Equal(t, dir+"\nhi\npiped", out["stdout"])
	assert.Equal(t, "err\n", out["stderr"])
	assert.Equal(t, 0, out["exit_code"])

	out, err = runOn(t, p, &Exec{Host: "ssh://box", Command: []string{"sh", "-c", "exit 3"}, ExitCodes: []int{0}})
	require.Error(t, err)
	assert.True(t, steps.IsFailure(err), "a wrong exit code is a failed check")
	assert.Equal(t, 3, out["exit_code"])

	// Its timeout kills it on the host.
	_, err = runOn(t, p, &Exec{Host: "ssh://box", Shell: "sh", Script: "sleep 3031 & sleep 3031", Timeout: time.Second, ExitCodes: []int{0}})
	require.Error(t, err)
	assert.True(t, steps.IsFailure(err))
	assert.Contains(t, err.Error(), "killed after timeout of 1s")
	assert.Eventually(t, func() bool {
		o, _ := exec.Command("pgrep", "-f", "^sleep 3031").Output()
		return strings.TrimSpace(string(o)) == ""
	}, 5*time.Second, 50*time.Millisecond, "no sleep left on the host")

	// A host that cannot be reached errors the step (not a failed check).
	bad := &host.Pool{SSHConfig: s.Config(t, s.KnownHosts(t, sshtest.WriteKey(t, t.TempDir()+"/k")), map[string]string{"box": ""})}
	t.Cleanup(func() { _ = bad.Close() })
	_, err = runOn(t, bad, &Exec{Host: "ssh://box", Command: []string{"true"}, ExitCodes: []int{0}})
	require.Error(t, err)
	assert.False(t, steps.IsFailure(err))
	assert.Contains(t, err.Error(), "host key")
	assert.Equal(t, 1, s.Accepted(t), "one login served every step")
}

func TestExecRemoteValidate(t *testing.T) {
	assert.NoError(t, (&Exec{Host: "ssh://ops@cgw?sudo=true", Command: []string{"true"}}).Validate())
	err := (&Exec{Host: "ssh://cgw", Command: []string{"true"}, Dir: "rel"}).Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "must be absolute")
	err = (&Exec{Host: "cgw", Command: []string{"true"}}).Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a host reference")
}
