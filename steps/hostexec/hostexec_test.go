package hostexec

import (
	"context"
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
	_, err = Run(ctx2, "", []string{"sleep", "5"}, nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestValidate(t *testing.T) {
	for _, ok := range []string{"", "local", "lab:client1", "lab:abc/client1"} {
		assert.NoError(t, Validate(ok), ok)
	}
	for _, bad := range []string{"lab:", "client1", "ssh://x"} {
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
	_, err = Run(ctx, "lab:nohost", []string{"true"}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `no running lab host "nohost"`)
}
