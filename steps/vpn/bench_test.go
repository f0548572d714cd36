package vpn_test

import (
	"testing"
	"time"

	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// BenchmarkTunnelUpToFirstPing measures, in the lab, the time from the
// start of tunnel.up to the first echo reply from the VGW inside address
// through the tunnel: tunnel.up (install, load, ip commands, IKEv1 main
// mode and two quick modes, CHILD_SAs installed), then `ping -c1 -W1` on
// cgw until one answers. Reported: ns/op (the whole), up_ms and
// establish_ms (tunnel.up's outputs) and ping_ms (from tunnel.up's return
// to the first reply). tunnel.down runs outside the timing.
func BenchmarkTunnelUpToFirstPing(b *testing.B) {
	d := newDrill(b)
	var upMS, establishMS, pingMS float64
	for b.Loop() {
		b.StopTimer()
		cfg := d.config(fixture)
		b.StartTimer()
		start := time.Now()
		up, _, err := d.up(cfg)
		if err != nil {
			b.Fatal(err)
		}
		upDone := time.Now()
		for {
			res, err := hostexec.Run(d.ctx, d.cgw, []string{"ping", "-n", "-c1", "-W1", cfg["vgw_inside_ip"].(string)}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if res.ExitCode == 0 {
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatal("no reply through the tunnel within a minute")
			}
		}
		b.StopTimer()
		upMS += float64(up["up_ms"].(int64))
		establishMS += float64(up["establish_ms"].(int64))
		pingMS += float64(time.Since(upDone).Milliseconds())
		d.cleanup()
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(upMS/n, "up_ms")
	b.ReportMetric(establishMS/n, "establish_ms")
	b.ReportMetric(pingMS/n, "ping_ms")
}
