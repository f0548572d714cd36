package vpn_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/steps"
)

// TestTunnelInTheLab runs the drill's steps against real strongSwan
// gateways in the lab, with the faults the drill must catch injected.
// Subtests share one lab and leave it clean.
func TestTunnelInTheLab(t *testing.T) {
	d := newDrill(t)
	vgwInside, ec2 := "169.254.21.45", lab.VPNEC2

	t.Run("ping before tunnel.up fails, through the tunnel passes, after tunnel.down fails", func(t *testing.T) {
		d.t = t
		defer d.cleanup()
		for _, addr := range []string{vgwInside, ec2} {
			out, err := d.ping(addr, nil)
			require.Error(t, err, addr)
			assert.True(t, steps.IsFailure(err), "%s: %v", addr, err)
			assert.Equal(t, 0, out["received"])
		}
		st, err := d.status("203.0.113.11")
		require.Error(t, err, "AWS reports the tunnel DOWN before it is up")
		assert.True(t, steps.IsFailure(err))
		assert.Contains(t, err.Error(), `tunnel 203.0.113.11 is DOWN ("IPSEC IS DOWN")`)
		assert.Equal(t, 0, st["up_count"])

		cfg := d.config(fixture)
		up, ev, err := d.up(cfg)
		require.NoError(t, err)
		assert.Equal(t, "ESTABLISHED", up["ike_state"])
		assert.Equal(t, 1, up["ike_version"])
		assert.Equal(t, cfg["ike_proposal"], up["ike_proposal"], "IKE: the runbook's aes128/sha1/group 2")
		assert.Equal(t, "aes128-sha1-modp1024", up["ike_proposal"])
		assert.Equal(t, cfg["esp_proposal"], up["esp_proposal"], "ESP: aes128/hmac-sha1 with PFS group 2")
		assert.Equal(t, "AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024", up["ike_algorithms"])
		assert.Equal(t, "ESP:AES_CBC-128/HMAC_SHA1_96/MODP_1024", up["esp_algorithms"])
		assert.Equal(t, "modp1024", up["pfs_group"])
		assert.Equal(t, 2, up["installed"])
		assert.Equal(t, "192.0.2.10", up["local_id"])
		assert.Equal(t, "203.0.113.11", up["remote_id"])
		assert.Equal(t, d.vars["vpn_remote_address"], up["remote_host"])
		assert.Regexp(t, `^[0-9a-f]{16}$`, up["ike_spi_initiator"])
		for _, spi := range append(up["spi_in"].([]string), up["spi_out"].([]string)...) {
			assert.Regexp(t, `^[0-9a-f]{8}$`, spi)
		}
		assert.GreaterOrEqual(t, up["establish_ms"], int64(0))
		children := up["children"].([]any)
		require.Len(t, children, 2)
		assert.Equal(t, "172.28.0.0/16", children[1].(map[string]any)["remote_ts"])
		require.Len(t, ev, 2)
		assert.Contains(t, ev[0].Text, "initiate completed successfully")
		assert.Len(t, ev[1].Table.Rows, 3, "IKE_SA and two CHILD_SAs")

		for _, addr := range []string{vgwInside, ec2} {
			out, err := d.ping(addr, nil)
			require.NoError(t, err, addr)
			assert.Equal(t, 0.0, out["loss_pct"], addr)
		}
		st, err = d.status("203.0.113.11")
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"203.0.113.11": "UP", "198.51.100.12": "DOWN"}, st["statuses"])
		_, err = d.status()
		require.Error(t, err, "every tunnel required, and tunnel #2 has no gateway in the lab")
		assert.Contains(t, err.Error(), "tunnel 198.51.100.12 is DOWN")

		down, _, err := d.step("tunnel.down", map[string]any{"host": d.cgw, "connection": cfg["connection"], "down_commands": cfg["down_commands"]})
		require.NoError(t, err)
		assert.Equal(t, true, down["terminated"])
		assert.Equal(t, true, down["config_removed"])
		_, err = d.ping(vgwInside, nil)
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err))
		_, err = d.status("203.0.113.11")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "tunnel 203.0.113.11 is DOWN")
	})

	t.Run("charon is reached by its socket path; a wrong one is an error, not a finding", func(t *testing.T) {
		d.t = t
		defer d.cleanup()
		cfg := d.config(fixture)
		with := map[string]any{
			"host": d.cgw, "config": cfg["config_file"], "connection": cfg["connection"],
			"up_commands": cfg["up_commands"], "down_commands": cfg["down_commands"],
			"socket": "/run/no-such-dir/charon.vici",
		}
		_, _, err := d.step("tunnel.up", with)
		require.Error(t, err)
		assert.False(t, steps.IsFailure(err))
		assert.Contains(t, err.Error(), "charon does not answer on unix:///run/no-such-dir/charon.vici")

		with["socket"] = "/var/run/charon.vici"
		up, _, err := d.step("tunnel.up", with)
		require.NoError(t, err)
		assert.Equal(t, 2, up["installed"])
	})

	mismatch := []struct {
		name  string
		edits []string
		want  []string
	}{
		{
			name:  "PSK mismatch",
			edits: []string{"opsdrill_fixture_tunnel1_psk_k7Hq", "opsdrill_fixture_tunnel1_psk_WRONG"},
			want:  []string{"pre-shared key mismatch", "IKE: [ENC] invalid HASH_V1 payload length, decryption failed?"},
		},
		{
			name:  "IKE proposal mismatch",
			edits: []string{"  - Encryption Algorithm     : aes-128-cbc", "  - Encryption Algorithm     : aes-256-cbc"},
			want:  []string{"NO_PROPOSAL_CHOSEN", "refused for the IKE_SA (phase 1: IKE proposal)", "IKE: [IKE] received NO_PROPOSAL_CHOSEN error notify"},
		},
		{
			name:  "ESP proposal mismatch",
			edits: []string{"Perfect Forward Secrecy  : Diffie-Hellman Group 2", "Perfect Forward Secrecy  : Diffie-Hellman Group 14"},
			want:  []string{"NO_PROPOSAL_CHOSEN", "refused for the CHILD_SA (phase 2: ESP proposal or PFS group)"},
		},
	}
	for _, tt := range mismatch {
		t.Run(tt.name+" fails tunnel.up with the IKE reason", func(t *testing.T) {
			d.t = t
			defer d.cleanup()
			cfg := d.config(d.generic(tt.edits...))
			out, ev, err := d.up(cfg)
			require.Error(t, err)
			t.Logf("tunnel.up: %v", err)
			assert.True(t, steps.IsFailure(err), "%v", err)
			assert.Contains(t, err.Error(), "tunnel aws-tunnel-1: CHILD_SA aws-tunnel-1-inside")
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "opsdrill_fixture_tunnel1_psk")
			assert.Empty(t, out["installed"], "no outputs of an SA that is not there")
			require.NotEmpty(t, ev)
			assert.Equal(t, "log", ev[0].Kind)
		})
	}

	testVPCFaults(t, d)

	t.Run("killing the vgw's charon mid-drill makes the keepalive ping report loss", func(t *testing.T) {
		d.t = t
		defer d.cleanup()
		defer d.restartVGWCharon()
		cfg := d.config(fixture)
		_, _, err := d.up(cfg)
		require.NoError(t, err)

		type result struct {
			out map[string]any
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, err := d.ping(vgwInside, map[string]any{"keepalive": true, "duration": "20s", "interval": "250ms", "count": 1})
			done <- result{out, err}
		}()
		// Let the keepalive get replies, then pull the plug on AWS's side.
		time.Sleep(6 * time.Second)
		d.exec("vgw", "sh", "-c", "kill -KILL $(pidof charon-systemd)")

		st, err := d.status("203.0.113.11")
		require.Error(t, err, "AWS sees the tunnel DOWN")
		assert.True(t, steps.IsFailure(err))
		assert.Equal(t, 0, st["up_count"])

		r := <-done
		require.NoError(t, r.err, "replies came before the kill")
		t.Logf("keepalive: sent %v, received %v, lost %v, longest outage %v ms",
			r.out["sent"], r.out["received"], r.out["lost"], r.out["longest_outage_ms"])
		assert.Equal(t, 80, r.out["sent"])
		assert.Greater(t, r.out["received"], 0)
		assert.Greater(t, r.out["lost"], 0, "the keepalive reports the loss")
		assert.Greater(t, r.out["loss_pct"], 0.0)
		assert.Greater(t, r.out["longest_outage_ms"], 1000.0)
	})
}

// restartVGWCharon brings AWS's side back after a kill, as the lab started
// it.
func (d *drill) restartVGWCharon() {
	d.t.Helper()
	h, err := d.l.Host("vgw")
	require.NoError(d.t, err)
	_, err = h.ExecCommand(d.ctx, lab.Command{Args: []string{"charon-systemd"}, Detach: true})
	require.NoError(d.t, err)
	out := d.exec("vgw", "sh", "-c", "i=0; until swanctl --stats >/dev/null 2>&1; do i=$((i+1)); [ $i -le 300 ] || exit 1; sleep 0.1; done; swanctl --load-all 2>/dev/null | tail -1")
	assert.True(d.t, strings.Contains(out, "successfully loaded 1 connections"), out)
}
