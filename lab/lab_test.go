package lab_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// resourcesOf lists the labelled containers and networks of lab id.
func resourcesOf(t *testing.T, id string) []lab.Resource {
	t.Helper()
	all, err := lab.ListResources(testCtx(t, 30*time.Second))
	require.NoError(t, err)
	var out []lab.Resource
	for _, r := range all {
		if r.Lab == id {
			out = append(out, r)
		}
	}
	return out
}

func TestHostsEnv(t *testing.T) {
	l := labtest.Up(t, "hosts")
	ctx := testCtx(t, 3*time.Minute)

	hosts := l.Hosts()
	require.Len(t, hosts, 3)
	ips := map[string]string{}
	for _, h := range hosts {
		assert.True(t, l.Subnet.Contains(h.IP), "%s: %s outside %s", h.Name, h.IP, l.Subnet)
		ips[h.Name] = h.IP.String()
	}
	assert.Len(t, map[string]bool{ips["client1"]: true, ips["client2"]: true, ips["server"]: true}, 3, "distinct IPs: %v", ips)

	host := func(name string) *lab.Host {
		h, err := l.Host(name)
		require.NoError(t, err)
		return h
	}
	reach := func(from, to string) error {
		res, err := host(from).Exec(ctx, "ping", "-c1", "-W2", to)
		if err != nil {
			return err
		}
		return res.Err()
	}

	t.Run("fixed hostnames", func(t *testing.T) {
		for _, h := range hosts {
			res, err := h.Exec(ctx, "hostname")
			require.NoError(t, err)
			assert.Equal(t, h.Name, strings.TrimSpace(res.Stdout))
		}
	})

	t.Run("names resolve to the fixed addresses", func(t *testing.T) {
		for _, from := range hosts {
			for _, to := range hosts {
				res, err := from.Exec(ctx, "getent", "hosts", to.Name)
				require.NoError(t, err)
				require.NoError(t, res.Err())
				assert.Equal(t, to.IP.String(), strings.Fields(res.Stdout)[0], "%s resolving %s", from.Name, to.Name)
			}
		}
	})

	t.Run("every host reaches every other by name and address", func(t *testing.T) {
		for _, from := range hosts {
			for _, to := range hosts {
				if from == to {
					continue
				}
				assert.NoError(t, reach(from.Name, to.Name), "%s -> %s by name", from.Name, to.Name)
				assert.NoError(t, reach(from.Name, to.IP.String()), "%s -> %s by address", from.Name, to.Name)
			}
		}
	})

	t.Run("exec separates stdout, stderr and exit code", func(t *testing.T) {
		tests := []struct {
			name    string
			cmd     lab.Command
			stdout  string
			stderr  string
			code    int
			wantErr bool
		}{
			{"success", lab.Command{Args: []string{"echo", "hello"}}, "hello\n", "", 0, false},
			{"streams and code", lab.Command{Args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, "out\n", "err\n", 3, true},
			{"stdin", lab.Command{Args: []string{"cat"}, Stdin: []byte("fed")}, "fed", "", 0, false},
			{"env", lab.Command{Args: []string{"sh", "-c", "echo $DRILL"}, Env: []string{"DRILL=yes"}}, "yes\n", "", 0, false},
			{"not found", lab.Command{Args: []string{"sh", "-c", "no-such-command"}}, "", "sh: 1: no-such-command: not found\n", 127, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := host("client1").ExecCommand(ctx, tt.cmd)
				require.NoError(t, err)
				assert.Equal(t, tt.stdout, res.Stdout)
				assert.Equal(t, tt.stderr, res.Stderr)
				assert.Equal(t, tt.code, res.ExitCode)
				assert.Equal(t, tt.wantErr, res.Err() != nil)
			})
		}
	})

	t.Run("network cut and reconnect", func(t *testing.T) {
		require.NoError(t, host("server").Disconnect(ctx))
		assert.Error(t, reach("client1", ips["server"]), "server still reachable after the cut")
		require.NoError(t, host("server").Reconnect(ctx))
		assert.NoError(t, reach("client1", "server"))
		assert.NoError(t, reach("client1", ips["server"]))
	})

	t.Run("graceful stop and start", func(t *testing.T) {
		start := time.Now()
		require.NoError(t, host("server").Stop(ctx, 10*time.Second))
		assert.Less(t, time.Since(start), 5*time.Second, "lab-init should exit on SIGTERM without waiting for the kill")
		st, err := host("server").State(ctx)
		require.NoError(t, err)
		assert.Equal(t, "exited", st)
		require.NoError(t, host("server").Start(ctx))
		assert.NoError(t, reach("client1", "server"))
	})

	t.Run("kill one host and see it gone", func(t *testing.T) {
		require.NoError(t, host("client2").Kill(ctx))
		st, err := host("client2").State(ctx)
		require.NoError(t, err)
		assert.Equal(t, "exited", st)
		assert.Error(t, reach("client1", ips["client2"]), "killed host still answers")
		_, err = host("client2").Exec(ctx, "true")
		assert.Error(t, err, "exec in a killed host")
		assert.NoError(t, reach("client1", "server"), "the others keep running")

		require.NoError(t, host("client2").Start(ctx))
		assert.NoError(t, reach("client1", "client2"))
		assert.NoError(t, reach("client2", ips["client1"]))
	})

	t.Run("vars", func(t *testing.T) {
		v := l.Vars()
		assert.Equal(t, l.ID, v["lab"].(map[string]any)["id"])
		hv := v["hosts"].(map[string]any)
		for name, ip := range ips {
			assert.Equal(t, ip, hv[name].(map[string]any)["ip"], name)
		}
		assert.NotContains(t, v, lab.SecretsKey, "the hosts environment has no credentials")
	})
}

func TestDownRemovesEverything(t *testing.T) {
	labtest.Require(t)
	ctx := testCtx(t, 3*time.Minute)
	l, err := lab.Up(ctx, lab.Options{Envs: []string{"hosts"}})
	require.NoError(t, err)
	assert.Len(t, resourcesOf(t, l.ID), 4, "3 containers and a network")
	require.NoError(t, l.Down(ctx))
	assert.Empty(t, resourcesOf(t, l.ID))
	require.NoError(t, l.Down(ctx), "down twice")
}

func TestStatePersistsAcrossProcesses(t *testing.T) {
	labtest.Require(t)
	ctx := testCtx(t, 3*time.Minute)
	dir := t.TempDir()
	l, err := lab.Up(ctx, lab.Options{Envs: []string{"hosts"}, StateDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Down(context.Background()) })

	// The vars file is valid YAML holding the addresses, readable by its
	// owner only.
	varsPath := filepath.Join(dir, "vars.yaml")
	fi, err := os.Stat(varsPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err := os.ReadFile(varsPath)
	require.NoError(t, err)
	var vars map[string]any
	require.NoError(t, yaml.Unmarshal(b, &vars))
	server, err := l.Host("server")
	require.NoError(t, err)
	assert.Equal(t, server.IP.String(), vars["hosts"].(map[string]any)["server"].(map[string]any)["ip"])

	// A second up in the same state folder is refused.
	_, err = lab.Up(ctx, lab.Options{Envs: []string{"hosts"}, StateDir: dir})
	require.ErrorIs(t, err, lab.ErrAlreadyRunning)
	assert.Contains(t, err.Error(), "lab down")

	// A later process finds the lab from the state folder.
	again, err := lab.Open(ctx, dir)
	require.NoError(t, err)
	assert.Equal(t, l.ID, again.ID)
	assert.Equal(t, l.Vars()["lab"], again.Vars()["lab"])
	assert.Equal(t, l.Password("db"), again.Password("db"), "passwords are stable for the lab's lifetime")
	st, err := again.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st, 3)
	for _, hs := range st {
		assert.Equal(t, "running", hs.State, hs.Name)
	}
	client1, err := again.Host("client1")
	require.NoError(t, err)
	res, err := client1.Exec(ctx, "ping", "-c1", "-W2", "server")
	require.NoError(t, err)
	require.NoError(t, res.Err())

	require.NoError(t, again.Down(ctx))
	assert.Empty(t, resourcesOf(t, l.ID))
	assert.NoFileExists(t, varsPath)
	_, err = lab.Open(ctx, dir)
	assert.ErrorIs(t, err, lab.ErrNoLab)
}

// The bastion environment's private network: a second network of the lab,
// found again by a later process, and gone with the lab.
func TestPrivateNetworkPersistsAndGoes(t *testing.T) {
	labtest.Require(t)
	ctx := testCtx(t, 3*time.Minute)
	dir := t.TempDir()
	l, err := lab.Up(ctx, lab.Options{Envs: []string{lab.BastionEnv}, StateDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Down(context.Background()) })
	assert.Len(t, resourcesOf(t, l.ID), 4, "2 containers, the lab network and the private one")
	assert.Equal(t, "opsdrill-"+l.ID+"-private", l.PrivateNetwork)
	assert.False(t, l.PrivateSubnet.Overlaps(l.Subnet), "private %s, lab %s", l.PrivateSubnet, l.Subnet)

	again, err := lab.Open(ctx, dir)
	require.NoError(t, err)
	assert.Equal(t, l.PrivateNetwork, again.PrivateNetwork)
	assert.Equal(t, l.PrivateSubnet, again.PrivateSubnet)
	assert.Equal(t, l.Vars()["lab"], again.Vars()["lab"])
	for _, name := range []string{lab.BastionHost, lab.BastionInner} {
		h1, err := l.Host(name)
		require.NoError(t, err)
		h2, err := again.Host(name)
		require.NoError(t, err)
		assert.Equal(t, h1.IP, h2.IP, name)
		assert.Equal(t, h1.PrivateIP, h2.PrivateIP, name)
		assert.Equal(t, h1.Network, h2.Network, name)
	}
	inner, err := again.Host(lab.BastionInner)
	require.NoError(t, err)
	on, err := inner.Connected(ctx)
	require.NoError(t, err)
	assert.True(t, on, "the reopened inner host knows which network it is on")

	require.NoError(t, again.Down(ctx))
	assert.Empty(t, resourcesOf(t, l.ID), "both networks removed")
}

func TestConcurrentUpInOneStateDir(t *testing.T) {
	labtest.Require(t)
	ctx := testCtx(t, 3*time.Minute)
	dir := t.TempDir()
	type result struct {
		l   *lab.Lab
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			l, err := lab.Up(ctx, lab.Options{Envs: []string{"hosts"}, StateDir: dir})
			results <- result{l, err}
		}()
	}
	var ok, refused int
	for range 2 {
		r := <-results
		switch {
		case r.err == nil:
			ok++
			t.Cleanup(func() { _ = r.l.Down(context.Background()) })
		case assert.ErrorIs(t, r.err, lab.ErrAlreadyRunning):
			refused++
		}
	}
	assert.Equal(t, 1, ok)
	assert.Equal(t, 1, refused)
}

func TestDownAllRemovesLeftovers(t *testing.T) {
	if id := os.Getenv("LAB_TEST_CRASH_CHILD"); id != "" {
		// A run that brings a lab up in-process, then dies without Down.
		_, err := lab.Up(context.Background(), lab.Options{Envs: []string{"hosts"}, ID: id})
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	labtest.Require(t)
	ctx := testCtx(t, 3*time.Minute)

	// A persisted lab whose state file was lost.
	dir := t.TempDir()
	lost, err := lab.Up(ctx, lab.Options{Envs: []string{"hosts"}, StateDir: dir})
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(dir, "state.json")))

	// An in-process lab of a crashed process.
	crashed := fmt.Sprintf("t-crashed-%d", os.Getpid())
	cmd := exec.Command(os.Args[0], "-test.run=^TestDownAllRemovesLeftovers$")
	cmd.Env = append(os.Environ(), "LAB_TEST_CRASH_CHILD="+crashed)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Len(t, resourcesOf(t, crashed), 4)

	// Labs in use stay: this process's own, and one another folder holds.
	live, err := lab.Up(ctx, lab.Options{Envs: []string{"hosts"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = live.Down(context.Background()) })
	otherDir := t.TempDir()
	other, err := lab.Up(ctx, lab.Options{Envs: []string{"hosts"}, StateDir: otherDir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Down(context.Background()) })

	removed, err := lab.DownAll(ctx, dir)
	require.NoError(t, err)
	var removedLabs []string
	for _, r := range removed {
		if !slices.Contains(removedLabs, r.Lab) {
			removedLabs = append(removedLabs, r.Lab)
		}
	}
	assert.Subset(t, removedLabs, []string{lost.ID, crashed})
	assert.NotContains(t, removedLabs, live.ID)
	assert.NotContains(t, removedLabs, other.ID)
	assert.Empty(t, resourcesOf(t, lost.ID))
	assert.Empty(t, resourcesOf(t, crashed))
	assert.Len(t, resourcesOf(t, live.ID), 4)
	assert.Len(t, resourcesOf(t, other.ID), 4)
	assert.NoFileExists(t, filepath.Join(dir, "vars.yaml"))
}

func ExampleUp() {
	ctx := context.Background()
	l, err := lab.Up(ctx, lab.Options{Envs: []string{"hosts"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Down(ctx)
	client1, _ := l.Host("client1")
	res, _ := client1.Exec(ctx, "ping", "-c1", "server")
	fmt.Println(res.ExitCode)
}
