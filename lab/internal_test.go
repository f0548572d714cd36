package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab/image"
)

func TestMissingImageSaysWhatToDo(t *testing.T) {
	tests := []struct {
		name    string
		ref     string
		others  []string
		mention []string
	}{
		{"never built", image.Ref(), nil, []string{image.Ref(), "make lab-images", "no registry"}},
		{"stale build", image.Ref(), []string{"opsdrill-lab:0123456789ab"}, []string{"make lab-images", "found opsdrill-lab:0123456789ab"}},
		{"override", "example/lab:1", nil, []string{"example/lab:1", image.EnvImage, "drop the override"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := missingImage(tt.ref, tt.others)
			require.ErrorIs(t, err, ErrImageMissing)
			for _, m := range tt.mention {
				assert.Contains(t, err.Error(), m)
			}
		})
	}
}

func TestEnvValidation(t *testing.T) {
	tests := []struct {
		name string
		env  Env
		want string
	}{
		{"ok", Env{Name: "db", Hosts: []HostSpec{{Name: "db1"}}}, ""},
		{"bad name", Env{Name: "DB", Hosts: []HostSpec{{Name: "db1"}}}, "environment name"},
		{"no hosts", Env{Name: "db"}, "no hosts"},
		{"bad host name", Env{Name: "db", Hosts: []HostSpec{{Name: "db_1"}}}, "host name"},
		{"duplicate host", Env{Name: "db", Hosts: []HostSpec{{Name: "db1"}, {Name: "db1"}}}, "duplicate host"},
		{"file without content", Env{Name: "db", Hosts: []HostSpec{{Name: "db1", Files: []File{{Path: "/x"}}}}}, "exactly one of"},
		{"file with both", Env{Name: "db", Hosts: []HostSpec{{Name: "db1", Files: []File{{Path: "/x", Content: []byte("a"), HostPath: "/y"}}}}}, "exactly one of"},
		{"port out of range", Env{Name: "db", Hosts: []HostSpec{{Name: "db1", Ports: []Port{{Container: 3306, Host: 70000}}}}}, "out of range"},
		{"empty start command", Env{Name: "db", Hosts: []HostSpec{{Name: "db1", Start: []Command{{}}}}}, "empty start command"},
		{"probe without command", Env{Name: "db", Hosts: []HostSpec{{Name: "db1", Ready: &Probe{}}}}, "without a command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.env.validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestRegisterEnvPanicsOnDuplicate(t *testing.T) {
	assert.Panics(t, func() { RegisterEnv(Env{Name: "hosts", Hosts: []HostSpec{{Name: "x"}}}) })
	assert.Panics(t, func() { RegisterEnv(Env{Name: "Bad"}) })
}

func TestOwnerAlive(t *testing.T) {
	hostname, err := os.Hostname()
	require.NoError(t, err)
	tests := []struct {
		name  string
		owner string
		alive bool
	}{
		{"this process", owner(), true},
		{"no owner", "", false},
		{"garbage", "nonsense", false},
		{"dead pid", hostname + ":999999999", false},
		{"other machine", "some-other-machine-name:1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.alive, ownerAlive(tt.owner))
		})
	}
}

// TestRyukDisabledUnlessSet runs the test binary again with the variable
// unset or set, and reads what the package's init left.
func TestRyukDisabledUnlessSet(t *testing.T) {
	if os.Getenv("LAB_TEST_RYUK_CHILD") == "1" {
		v, ok := os.LookupEnv(ryukEnv)
		fmt.Printf("ryuk=%v,%s\n", ok, v)
		return
	}
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"unset: disabled", nil, "ryuk=true,true"},
		{"user's choice kept", []string{ryukEnv + "=false"}, "ryuk=true,false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRyukDisabledUnlessSet$")
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, ryukEnv+"=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(append(cmd.Env, "LAB_TEST_RYUK_CHILD=1"), tt.env...)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Contains(t, string(out), tt.want)
		})
	}
}
