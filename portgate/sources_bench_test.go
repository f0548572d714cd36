package portgate_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opsdrill/opsdrill/portgate"
	"github.com/opsdrill/opsdrill/portgate/api"
	"github.com/opsdrill/opsdrill/portgate/audit"
	"github.com/opsdrill/opsdrill/portgate/auth"
	"github.com/opsdrill/opsdrill/portgate/firewall"
	"github.com/opsdrill/opsdrill/portgate/netnstest"
	pgt "github.com/opsdrill/opsdrill/portgate/portgatetest"
)

// BenchmarkOpenWithAMillionSourcesSeen measures an open (code check,
// throttle, nftables element, fsynced journal line) once 1,000,000
// distinct sources have failed against the gate, each new open coming from
// yet another source, so the throttle's maps are full and every request
// evicts. The daemon runs in-process on a hand-driven clock (a time step
// per batch, no waiting) with the real nftables backend in a network
// namespace, and Run beside it (journal compaction). Target: p99 <= 10 ms.
func BenchmarkOpenWithAMillionSourcesSeen(b *testing.B) {
	for _, seen := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("seen=%d", seen), func(b *testing.B) { benchOpenAfter(b, seen) })
	}
}

func benchOpenAfter(b *testing.B, seen int) {
	const batch = 200
	netnstest.RequireTool(b, "nft")
	ns := netnstest.New(b, "bench")
	dir := b.TempDir()
	cfg, err := portgate.ParseConfig(strings.NewReader(fmt.Sprintf("ports: [22]\nstate_file: %s\nlease: {max: 1h, max_total: 100000, max_per_user: 100000}\nusers:\n  - {name: target, secret: %s}\n%s",
		filepath.Join(dir, "state.json"), pgt.SecretB32, benchUsers(batch))), dir)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	var fw *firewall.NFTables
	if err := ns.Do(func() (err error) {
		fw, err = firewall.NewNFTables(firewall.NFTablesConfig{}, true, clock)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	d, err := portgate.New(cfg, portgate.Options{Now: clock, Firewall: fw, Audit: audit.New(io.Discard, clock)})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(); err != nil {
		b.Fatal(err)
	}
	key, _ := auth.NewKey([]byte("12345678901234567890"), 6, 30*time.Second, "SHA1")
	src := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	ctx := context.Background()
	fill := time.Now()
	for i := range seen {
		if i%100_000 == 0 {
			now = now.Add(time.Second)
		}
		_, _ = d.Open(ctx, api.OpenRequest{User: "target", Code: "000000", Port: 22}, src(i))
	}
	b.Logf("%d sources failed in %s", seen, time.Since(fill).Round(time.Millisecond))
	// The fill's garbage is collected before timing: what is measured is
	// a gate holding a million sources, not one digesting their arrival.
	runtime.GC()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go d.Run(runCtx) // journal compaction happens there, as in portgate
	var lat latencies
	next := seen
	b.ResetTimer()
	for range b.N {
		now = now.Add(30 * time.Second)
		code := key.Code(key.Counter(now))
		for u := range batch {
			next++
			start := time.Now()
			if _, err := d.Open(ctx, api.OpenRequest{User: fmt.Sprintf("u%d", u), Code: code, Port: 22, Duration: 10 * time.Minute}, src(next)); err != nil {
				b.Fatalf("open from source %d: %v", next, err)
			}
			lat = append(lat, time.Since(start))
		}
	}
	b.StopTimer()
	b.ReportMetric(ms(lat.pct(0.50)), "p50-ms")
	b.ReportMetric(ms(lat.pct(0.99)), "p99-ms")
	b.ReportMetric(ms(lat.pct(1)), "max-ms")
	b.ReportMetric(0, "ns/op")
	_ = d.Shutdown()
}
