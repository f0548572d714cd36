package firewall

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/opsdrill/opsdrill/portgate/netnstest"
)

// BenchmarkSetDelete installs and removes one lease rule, in an empty
// table and next to 1,000 other rules (go test -bench SetDelete
// ./portgate/firewall).
func BenchmarkSetDelete(b *testing.B) {
	for _, c := range backendCases {
		for _, others := range []int{0, 1000} {
			b.Run(c.name+"/rules="+strconv.Itoa(others), func(b *testing.B) {
				netnstest.RequireTool(b, c.tool)
				g := netnstest.New(b, "bench")
				var fw Backend
				if err := g.Do(func() error {
					var err error
					if fw, err = New(Config{Backend: c.name}, time.Now); err != nil {
						return err
					}
					if err := fw.Init([]Port{{Proto: TCP, Num: 22}}); err != nil {
						return err
					}
					for i := range others {
						ip := netip.AddrFrom4([4]byte{10, 100, byte(i / 250), byte(i%250 + 1)})
						if err := fw.Set(Rule{IP: ip, Port: 22, Until: time.Now().Add(time.Hour)}); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				ip := netip.MustParseAddr("10.200.0.1")
				b.ResetTimer()
				err := g.Do(func() error {
					for range b.N {
						if err := fw.Set(Rule{IP: ip, Port: 22, Until: time.Now().Add(time.Minute)}); err != nil {
							return err
						}
						if err := fw.Delete(ip, TCP, 22); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
