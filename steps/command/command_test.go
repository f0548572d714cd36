package command

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

func runExec(t *testing.T, e *Exec) (map[string]any, error) {
	t.Helper()
	require.NoError(t, e.Validate())
	env := steps.NewEnv("s", "x", t.TempDir(), steps.Hooks{})
	env.BaseDir = t.TempDir()
	err := e.Run(context.Background(), env)
	return env.Outputs(), err
}

func TestExec(t *testing.T) {
	out, err := runExec(t, &Exec{Command: []string{"sh", "-c", "echo out; echo err >&2; cat"}, Stdin: "piped", ExitCodes: []int{0}})
	require.NoError(t, err)
	assert.Equal(t, "out\npiped", out["stdout"])
	assert.Equal(t, "err\n", out["stderr"])
	assert.Equal(t, 0, out["exit_code"])
}

func TestExecArgvIsNotAShell(t *testing.T) {
	out, err := runExec(t, &Exec{Command: []string{"echo", "$HOME", ";", "rm"}, ExitCodes: []int{0}})
	require.NoError(t, err)
	assert.Equal(t, "$HOME ; rm\n", out["stdout"])
}

func TestExecScriptWithExplicitShell(t *testing.T) {
	out, err := runExec(t, &Exec{Shell: "sh", Script: "echo $GREETING | tr a-z A-Z", Env: map[string]string{"GREETING": "hi"}, ExitCodes: []int{0}})
	require.NoError(t, err)
	assert.Equal(t, "HI\n", out["stdout"])
}

func TestExecExitCodeFails(t *testing.T) {
	out, err := runExec(t, &Exec{Command: []string{"sh", "-c", "echo nope >&2; exit 3"}, ExitCodes: []int{0}})
	require.Error(t, err)
	assert.True(t, steps.IsFailure(err))
	assert.Contains(t, err.Error(), "sh exited with 3 (expected 0): nope")
	assert.Equal(t, 3, out["exit_code"])
	_, err = runExec(t, &Exec{Command: []string{"sh", "-c", "exit 3"}, ExitCodes: []int{0, 3}})
	require.NoError(t, err)
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	start := time.Now()
	_, err := runExec(t, &Exec{Shell: "sh", Script: "sleep 30 & sleep 30; wait", Timeout: 200 * time.Millisecond, ExitCodes: []int{0}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "killed after timeout of 200ms")
	assert.Less(t, time.Since(start), 5*time.Second, "children did not keep the step alive")
}

func TestExecMissingProgramErrors(t *testing.T) {
	_, err := runExec(t, &Exec{Command: []string{"/nonexistent/prog"}, ExitCodes: []int{0}})
	require.Error(t, err)
	assert.False(t, steps.IsFailure(err), "a program that cannot start is an error, not a failed check")
}

func TestExecValidate(t *testing.T) {
	for _, tc := range []struct {
		e    Exec
		want string
	}{
		{Exec{}, "command: missing"},
		{Exec{Script: "ls"}, "shell: required with script"},
		{Exec{Command: []string{"ls"}, Shell: "sh", Script: "ls"}, "not both"},
		{Exec{Command: []string{""}}, "program name is empty"},
	} {
		err := tc.e.Validate()
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}
