package reports

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

// auditStep is one step of AuditRun.
type auditStep struct {
	id, uses, status string
	ms               int64
	outputs          map[string]any
	figures          []steps.Figure
	params           map[string]any
	limits           map[string][]Limit
	exps             []Expectation
	evidence         []steps.Evidence
	err              string
}

type auditScenario struct {
	name, file, desc string
	controls         []string
	status, err      string
	steps            []auditStep
}

// AuditRun is a run like `make demo`'s: a passed failover drill with
// writers as records and a chart, a failed VPN drill (RTT over its limit),
// a port drill, and a drill mapped to no control; for the renderer, PDF
// and browser tests.
func AuditRun(t testing.TB) *Run {
	t.Helper()
	writers := map[string]any{}
	var rows [][]string
	for i := 1; i <= 5; i++ {
		c := fmt.Sprintf("R1-cycle%d", i)
		writers[c] = map[string]any{"attempted": 1332.0 + float64(i), "acknowledged": 1330.0 + float64(i), "lost": 0.0,
			"max_acked": 1330.0 + float64(i), "max_in_db": 1330.0 + float64(i), "unknown": 1.0, "failed": 1.0}
		rows = append(rows, []string{c, fmt.Sprint(1330 + i), fmt.Sprint(1330 + i), fmt.Sprint(1330 + i), "0"})
	}
	var acks, errs []float64
	for s := 0; s < 40; s++ {
		a, e := 330.0, 0.0
		if s >= 18 && s < 21 {
			a, e = 0, 12
		}
		acks, errs = append(acks, float64(s), a), append(errs, float64(s), e)
	}
	children := []any{
		map[string]any{"name": "aws-1-inside", "state": "INSTALLED", "mode": "TUNNEL", "protocol": "ESP", "spi_in": "c1a2b3c4", "spi_out": "d5e6f7a8",
			"algorithms": "AES_CBC-128/HMAC_SHA1_96/MODP_1024", "local_ts": "169.254.21.46/30", "remote_ts": "169.254.21.45/30"},
		map[string]any{"name": "aws-1-vpc", "state": "INSTALLED", "mode": "TUNNEL", "protocol": "ESP", "spi_in": "c9d8e7f6", "spi_out": "a1b2c3d4",
			"algorithms": "AES_CBC-128/HMAC_SHA1_96/MODP_1024", "local_ts": "169.254.21.46/30", "remote_ts": "172.28.0.0/16"},
	}
	longConf := "connections {\n"
	for i := 0; i < 30; i++ {
		longConf += fmt.Sprintf("  line %d = value %d\n", i, i)
	}
	longConf += "}\n"
	scs := []auditScenario{
		{name: "rds-multi-az-failover", file: "scenarios/rds-multi-az-failover.yaml",
			desc:     "Flood the primary, reboot the instance with failover, prove on the new primary that no acknowledged write was lost, and measure the write downtime and the DNS switch.",
			controls: []string{"ISO27001:A.5.30", "ISO27001:A.8.14", "SOC2:A1.2"}, status: StatusPassed,
			steps: []auditStep{
				{id: "flood", uses: "db.flood", status: StatusPassed, ms: 40000,
					outputs:  map[string]any{"acknowledged": 6652.0, "attempted": 6660.0, "failed": 5.0, "unknown": 3.0, "writers": writers},
					figures:  []steps.Figure{{Output: "acknowledged", Text: "{value} of {attempted} writes acknowledged ({failed} failed, {unknown} outcome unknown)"}},
					evidence: []steps.Evidence{steps.TableEvidence("Writers (the runbook's cycles)", []string{"cycle", "attempted", "acknowledged", "last acked", "lost"}, rows)}},
				{id: "failover", uses: "db.failover", status: StatusPassed, ms: 5200,
					outputs: map[string]any{"switched": true, "az_before": "lab-1a", "az_after": "lab-1b", "duration_ms": 5100.0},
					figures: []steps.Figure{{Output: "switched", Text: "writer changed (zone {az_before|unknown} to {az_after|unknown})", TextFalse: "the writer did not change"}}},
				{id: "dns", uses: "dns.watch", status: StatusPassed, ms: 9000, outputs: map[string]any{"switch_ms": 3612.0, "changed": true},
					figures: []steps.Figure{{Output: "switch_ms", Text: "DNS moved {value} after the trigger", Unit: "ms", Seconds: true}},
					limits:  map[string][]Limit{"switch_ms": {{Expr: "outputs.switch_ms < 30000", Op: "<", Value: 30000.0, OK: true}}}},
				{id: "verify", uses: "db.verify", status: StatusPassed, ms: 800,
					outputs: map[string]any{"lost": 0.0, "acknowledged": 6652.0, "write_downtime_ms": 2764.0, "writers": writers},
					figures: []steps.Figure{{Output: "lost", Text: "{value} of {acknowledged} acknowledged writes lost"},
						{Output: "write_downtime_ms", Text: "writes stopped {value}", Unit: "ms", Seconds: true}},
					limits: map[string][]Limit{"lost": {{Expr: "outputs.lost == 0", Op: "==", Value: 0.0, OK: true}},
						"write_downtime_ms": {{Expr: "outputs.write_downtime_ms < 30000", Op: "<", Value: 30000.0, OK: true}}},
					exps: []Expectation{{Expr: "outputs.lost == 0", OK: true}, {Expr: "outputs.write_downtime_ms < 30000", OK: true}},
					evidence: []steps.Evidence{{Kind: "series", Title: "Acknowledged and failed writes per second", Series: []steps.Series{
						{Name: "acknowledged", XUnit: "s", YUnit: "writes", Points: acks}, {Name: "failed", Points: errs}},
						Marks: []steps.Mark{{X: 18.2, Label: "failover triggered"}, {X: 21.8, Label: "DNS switch"}}}}},
			}},
		{name: "aws-vpn-tunnel", file: "scenarios/aws-vpn-tunnel.yaml",
			desc:     "Bring the tunnel up with the agreed IKE and ESP parameters and ping the VGW inside address and an EC2 instance in the VPC through it.",
			controls: []string{"ISO27001:A.8.20", "ISO27001:A.8.24", "SOC2:CC6.7"}, status: StatusFailed, err: "step ping_ec2 failed",
			steps: []auditStep{
				{id: "config", uses: "vpn.config", status: StatusPassed, ms: 12, outputs: map[string]any{"ike_proposal": "aes128-sha1-modp1024", "esp_proposal": "aes128-sha1-modp1024",
					"ike_version": 1.0, "routing": "static", "config_preview": longConf}},
				{id: "up", uses: "tunnel.up", status: StatusPassed, ms: 270, outputs: map[string]any{"establish_ms": 270.0, "connection": "aws-1", "installed": 2.0,
					"ike_proposal": "aes128-sha1-modp1024", "esp_proposal": "aes128-sha1-modp1024", "children": children},
					figures: []steps.Figure{{Output: "establish_ms", Text: "tunnel {connection} up in {value}", Unit: "ms", Seconds: true},
						{Output: "installed", Text: "{value} CHILD_SAs installed, IKE {ike_proposal}, ESP {esp_proposal}"}},
					evidence: []steps.Evidence{steps.TableEvidence("Security associations", []string{"SA", "state", "mode", "algorithms", "SPIs (in / out)", "local", "remote"}, [][]string{
						{"aws-1-inside", "INSTALLED", "TUNNEL", "AES_CBC-128/HMAC_SHA1_96/MODP_1024", "c1a2b3c4 / d5e6f7a8", "169.254.21.46/30", "169.254.21.45/30"},
						{"aws-1-vpc", "INSTALLED", "TUNNEL", "AES_CBC-128/HMAC_SHA1_96/MODP_1024", "c9d8e7f6 / a1b2c3d4", "169.254.21.46/30", "172.28.0.0/16"}})}},
				{id: "ping_ec2", uses: "net.ping", status: StatusFailed, ms: 1100,
					outputs: map[string]any{"loss_pct": 0.0, "rtt_avg_ms": 61.4, "received": 5.0, "sent": 5.0},
					params:  map[string]any{"address": "172.28.16.136"},
					figures: []steps.Figure{{Output: "loss_pct", Text: "{with.address}: {received} of {sent} echo requests answered, {value} loss", Unit: "%"},
						{Output: "rtt_avg_ms", Text: "RTT {value}", Unit: "ms", When: "received"}},
					limits: map[string][]Limit{"loss_pct": {{Expr: "outputs.loss_pct == 0", Op: "==", Value: 0.0, OK: true}},
						"rtt_avg_ms": {{Expr: "outputs.rtt_avg_ms < vars.vpn_max_rtt_ms", Op: "<", Value: 50.0, OK: false}}},
					exps: []Expectation{{Expr: "outputs.loss_pct == 0", OK: true}, {Expr: "outputs.rtt_avg_ms < vars.vpn_max_rtt_ms", OK: false,
						Values: map[string]string{"outputs.rtt_avg_ms": "61.4", "vars.vpn_max_rtt_ms": "50"}}},
					evidence: []steps.Evidence{{Kind: "series", Title: "ping 172.28.16.136 RTT", Series: []steps.Series{{Name: "rtt", XUnit: "packet", YUnit: "ms",
						Points: []float64{1, 58.1, 2, 60.2, 3, 66.0, 4, 61.9, 5, 60.8}}}}}},
				{id: "down", uses: "tunnel.down", status: StatusSkipped},
			}},
		{name: "open-port", file: "scenarios/open-port.yaml",
			desc:     "SSH behind portgate is closed by default, opens only for the address that authenticated with a fresh TOTP code, and closes again when the lease ends.",
			controls: []string{"ISO27001:A.5.15", "ISO27001:A.8.5", "SOC2:CC6.1"}, status: StatusPassed,
			steps: []auditStep{
				{id: "closed_before", uses: "tcp.probe", status: StatusPassed, ms: 2000, outputs: map[string]any{"open": false, "state": "timeout"},
					params:  map[string]any{"address": "gate:22", "host": "lab:pgclient1"},
					figures: []steps.Figure{{Output: "open", Text: "{with.address} open from {with.host|this machine}", TextFalse: "{with.address} closed from {with.host|this machine} ({state})"}}},
				{id: "open_from_client", uses: "tcp.probe", status: StatusPassed, ms: 30, outputs: map[string]any{"open": true, "state": "open"},
					params:  map[string]any{"address": "gate:22", "host": "lab:pgclient1"},
					figures: []steps.Figure{{Output: "open", Text: "{with.address} open from {with.host|this machine}", TextFalse: "{with.address} closed from {with.host|this machine} ({state})"}}},
				{id: "closed_from_other", uses: "tcp.probe", status: StatusPassed, ms: 2000, outputs: map[string]any{"open": false, "state": "timeout"},
					params:  map[string]any{"address": "gate:22", "host": "lab:pgclient2"},
					figures: []steps.Figure{{Output: "open", Text: "{with.address} open from {with.host|this machine}", TextFalse: "{with.address} closed from {with.host|this machine} ({state})"}}},
			}},
		{name: "epson-scanner", file: "scenarios/epson-scanner.yaml", desc: "The Epson L350 is on the USB bus and scanimage lists it.", status: StatusPassed,
			steps: []auditStep{{id: "scanner", uses: "scanner.visible", status: StatusPassed, ms: 400, outputs: map[string]any{"visible": true, "conflicts": []any{}},
				figures: []steps.Figure{{Output: "visible", Text: "scanimage lists the scanner", TextFalse: "scanimage does not list the scanner"}}}}},
	}
	at := time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC)
	b := NewBuilder()
	b.Emit(&Event{Type: EventRunStart, Time: at, Run: &RunInfo{ToolVersion: "v1.4.0", ToolCommit: "9f2c1e4b7a0d3c5e8f1a2b3c4d5e6f708192a3b4", RunID: "20261121T020000Z-4242-1",
		Host: "ci-runner-7", User: "root", UID: "0", Args: []string{"run", "--vars", "scenarios/targets/lab.yaml", "scenarios/"},
		VarsFiles: []FileRef{{Path: "scenarios/targets/lab.yaml", SHA256: "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"}}}})
	for i, sc := range scs {
		info := &ScenarioInfo{Name: sc.name, File: sc.file, Description: sc.desc, Controls: sc.controls,
			SHA256: fmt.Sprintf("%064x", i+1), Git: &GitRef{Commit: "5e75144915082a9d5d5d2e7e8b6a1c0f3e2d1c0b", State: "clean", Path: sc.file},
			Vars: map[string]any{"writers": 5, "endpoint": "testrds.lab.internal"}}
		for _, st := range sc.steps {
			info.Steps = append(info.Steps, StepInfo{ID: st.id, Uses: st.uses, Phase: PhaseMain})
		}
		at = at.Add(time.Second)
		b.Emit(&Event{Type: EventScenarioStart, Scenario: i, Time: at, ScenarioInfo: info})
		for _, st := range sc.steps {
			si := &StepInfo{ID: st.id, Uses: st.uses, Phase: PhaseMain}
			res := &StepResult{Status: st.status, DurationMS: st.ms, Outputs: st.outputs, Expectations: st.exps, Evidence: st.evidence, Error: st.err}
			if st.status == StatusSkipped {
				res.SkipReason = "skipped: step ping_ec2 failed"
			} else {
				b.Emit(&Event{Type: EventStepStart, Scenario: i, Time: at, Step: si})
			}
			for _, f := range st.figures {
				fig, ok := NewFigure(st.id, f, st.outputs, st.params, st.limits[f.Output])
				require.True(t, ok, "%s %s", st.id, f.Output)
				res.Figures = append(res.Figures, fig)
			}
			at = at.Add(time.Duration(st.ms) * time.Millisecond)
			b.Emit(&Event{Type: EventStepEnd, Scenario: i, Time: at, Step: si, Result: res})
		}
		b.Emit(&Event{Type: EventScenarioEnd, Scenario: i, Time: at, Status: sc.status, Error: sc.err})
	}
	b.Emit(&Event{Type: EventRunEnd, Time: at, Status: StatusFailed, Hosts: []HostRef{
		{Ref: "lab:pgclient1", Transport: "lab", Address: "opsdrill-lab-1-pgclient1", Steps: []string{"open-port/closed_before", "open-port/open_from_client"}},
		{Ref: "ssh://ops@cgw", Transport: "ssh", Address: "10.213.7.2:22", HostKey: "SHA256:Tb6W2yF1vS4r0mV8c1oKk8yq0C1QJbq3pW1n9mJ5cAs", Steps: []string{"aws-vpn-tunnel/up"}},
	}})
	run := b.Run(at)
	run.Signer = "ed25519 SHA256:q3Zx1Jd0cO7yC4mJ2W1zR8tP5nL6kV9bH3gF0sD2aE4"
	return run
}
