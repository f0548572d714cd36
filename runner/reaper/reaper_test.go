package reaper

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReapKillsMarkedProcessesOnly(t *testing.T) {
	start := func(token string) *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		cmd.Env = append(os.Environ(), EnvToken+"="+token)
		// A session of its own: a process group kill would miss it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		require.NoError(t, cmd.Start())
		return cmd
	}
	mine, other := start("tok-mine"), start("tok-mine-not")
	defer other.Process.Kill()
	done := make(chan error, 1)
	go func() { done <- mine.Wait() }()
	assert.Equal(t, 1, Reap("tok-mine"))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the marked process survived")
	}
	assert.NoError(t, other.Process.Signal(syscall.Signal(0)), "a process with another token is left alone")
}
