package db

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/db/failoverdriver"
)

// testPlatform is a failover driver registered the way the lab registers
// its own: db.failover reaches it only through failoverdriver.
type testPlatform struct {
	mu        sync.Mutex
	params    failoverdriver.Params
	stuck     bool // the fault: the trigger moves nothing
	openErr   error
	triggered bool
	moved     bool
	closed    bool
}

var platform = &testPlatform{}

func (p *testPlatform) Check(pr failoverdriver.Params) error {
	if pr.Action != "kill" && pr.Action != "switchover" {
		return errors.New("action: the test platform kills or switches over")
	}
	return nil
}

func (p *testPlatform) Open(_ context.Context, _ *steps.Env, pr failoverdriver.Params) (failoverdriver.Driver, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.openErr != nil {
		return nil, p.openErr
	}
	p.params, p.triggered, p.moved, p.closed = pr, false, false, false
	return p, nil
}

func (p *testPlatform) State(context.Context) (failoverdriver.Writer, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.moved {
		return failoverdriver.Writer{Host: "node-2", AZ: "z-2", Status: "available"}, true, nil
	}
	return failoverdriver.Writer{Host: "node-1", AZ: "z-1", Status: "available"}, p.triggered, nil
}

func (p *testPlatform) Trigger(_ context.Context, env *steps.Env) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	env.Note(failoverdriver.MomentFault, "node-1 killed", time.Now())
	p.triggered, p.moved = true, !p.stuck
	return nil
}

func (p *testPlatform) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

func init() { failoverdriver.Register("test-platform", platform) }

// TestFailoverRegisteredDriver: a driver that joined failoverdriver gets
// the step's parameters, is checked at validate time, drives the failover
// and is closed; one whose trigger moves nothing fails the check.
func TestFailoverRegisteredDriver(t *testing.T) {
	cases := []struct {
		name     string
		action   string
		stuck    bool
		openErr  error
		validErr string
		runErr   string
		failure  bool
	}{
		{name: "the writer moves", action: "switchover"},
		{name: "the writer stays", action: "kill", stuck: true, runErr: "did not switch writers", failure: true},
		{name: "the platform refuses", action: "kill", openErr: errors.New("lab: no lab runs it"), runErr: "lab: no lab runs it"},
		{name: "checked by the driver", action: "partition", validErr: "action: the test platform kills or switches over"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			platform.mu.Lock()
			platform.stuck, platform.openErr, platform.params = tc.stuck, tc.openErr, failoverdriver.Params{}
			platform.mu.Unlock()
			f := newFailover().(*Failover)
			f.Driver, f.Action, f.Lab, f.ReplaceStandby = "test-platform", tc.action, "lab42", true
			f.Poll, f.CompleteWithin = 10*time.Millisecond, 300*time.Millisecond
			if tc.validErr != "" {
				err := f.Validate()
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.validErr)
				return
			}
			env, _ := newEnv(t, t.TempDir(), "drill", "failover")
			err := run(t, f, env)
			if tc.runErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.runErr)
				assert.Equal(t, tc.failure, steps.IsFailure(err), "%v", err)
				return
			}
			require.NoError(t, err)
			out := env.Outputs()
			assert.Equal(t, true, out["switched"])
			assert.Equal(t, "node-1", out["writer_before"].(map[string]any)["host"])
			assert.Equal(t, "node-2", out["writer_after"].(map[string]any)["host"])
			assert.Equal(t, "z-2", out["az_after"])
			platform.mu.Lock()
			defer platform.mu.Unlock()
			assert.Equal(t, failoverdriver.Params{Lab: "lab42", Action: "switchover", PartitionFor: 10 * time.Second, ReplaceStandby: true, Fence: true}, platform.params)
			assert.True(t, platform.closed, "the driver is closed when the step ends")
			var kinds []string
			for _, m := range env.Timeline().Moments() {
				kinds = append(kinds, m.Kind)
			}
			assert.Contains(t, kinds, MomentFault, "the driver's fault moment is the step's")
		})
	}
}
