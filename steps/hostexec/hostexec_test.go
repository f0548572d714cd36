package hostexec

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab/labtest"
)

func TestLocal(t *testing.T) {
	ctx := context.Background()
	res, err := Run(ctx, "", []string{"sh", "-c", "cat; echo err >&2; exit 4"}, []byte("in"))
	require.NoError(t, err)
	assert.Equal(t, Result{Stdout: "in", Stderr: "err\n", ExitCode: 4}, res)
	_, err = Run(ctx, "local", []string{"/nonexistent"}, nil)
	assert.Error(t, err)
	assert.NoError(t, LookPath(ctx, "", "sh"))
	assert.Error(t, LookPath(ctx, "", "no-such-program-here"))
	ctx2, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	// The grandchild keeps stdout open: the whole group must be killed.
	_, err = Run(ctx2, "", []string{"sh", "-c", "sleep 30 & sleep 30"}, nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 10*time.Second)

	res, err = RunCommand(ctx, "", Command{Args: []string{"sh", "-c", "echo $GREETING"}, Env: []string{"GREETING=hi"}})
	require.NoError(t, err)
	assert.Equal(t, "hi\n", res.Stdout)
}

func TestValidate(t *testing.T) {
	for _, ok := range []string{"", "local", "lab:client1", "lab:abc/client1"} {
		assert.NoError(t, Validate(ok), ok)
	}
	for _, bad := range []string{"lab:", "client1", "lab:/client1", "nosuch:x"} {
		assert.Error(t, Validate(bad), bad)
	}
}

func TestLabHost(t *testing.T) {
	l := labtest.Up(t, "hosts")
	ctx := context.Background()
	res, err := Run(ctx, "lab:client1", []string{"hostname"}, nil)
	require.NoError(t, err)
	assert.Equal(t, "client1\n", res.Stdout)
	res, err = Run(ctx, "lab:"+l.ID+"/server", []string{"sh", "-c", "cat; exit 3"}, []byte("x"))
	require.NoError(t, err)
	assert.Equal(t, 3, res.ExitCode)
	assert.Equal(t, "x", res.Stdout)
	assert.NoError(t, LookPath(ctx, "lab:client2", "oathtool"))
	assert.Error(t, LookPath(ctx, "lab:client2", "no-such-program"))
	res, err = RunCommand(ctx, "lab:client1", Command{Args: []string{"sh", "-c", "echo $GREETING"}, Env: []string{"GREETING=hi"}})
	require.NoError(t, err)
	assert.Equal(t, "hi\n", res.Stdout)

	// A deadline stops the command inside the host, not just the wait.
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, _ = Run(short, "lab:client1", []string{"sleep", "300"}, nil)
	require.Eventually(t, func() bool {
		r, err := Run(ctx, "lab:client1", []string{"sh", "-c", "pgrep -f '[s]leep 300' || true"}, nil)
		return err == nil && strings.TrimSpace(r.Stdout) == ""
	}, 10*time.Second, 200*time.Millisecond, "sleep was killed inside the host")

	_, err = Run(ctx, "lab:nohost", []string{"true"}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `no running lab host "nohost"`)
}
