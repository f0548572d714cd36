package lease

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkSave writes a snapshot (atomically, with fsync) holding n
// leases: what a start, a stop and a journal compaction cost.
func BenchmarkSave(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("leases=%d", n), func(b *testing.B) {
			f := &File{Path: filepath.Join(b.TempDir(), "state.json")}
			tb := NewTable()
			for i := range n {
				_, hash := NewToken()
				ip := netip.AddrFrom4([4]byte{10, 100, byte(i / 250), byte(i%250 + 1)})
				tb.Add(Lease{ID: NewID(), User: fmt.Sprintf("u%d", i), IP: ip, Source: ip, Port: 22,
					Created: time.Now(), Expires: time.Now().Add(time.Hour), TokenHash: hash})
			}
			st := State{Leases: tb.All(), Floors: map[string]uint64{"alice": 1}}
			b.ResetTimer()
			for range b.N {
				if err := f.Save(st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppend journals one open (one line, one fsync) next to n live
// leases: what every open and close pays.
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("leases=%d", n), func(b *testing.B) {
			f := &File{Path: filepath.Join(b.TempDir(), "state.json")}
			var ls []Lease
			for i := range n {
				ip := netip.AddrFrom4([4]byte{10, 100, byte(i / 250), byte(i%250 + 1)})
				ls = append(ls, Lease{ID: NewID(), User: "u", IP: ip, Port: 22, Expires: time.Now().Add(time.Hour)})
			}
			if err := f.Save(State{Leases: ls}); err != nil {
				b.Fatal(err)
			}
			_, hash := NewToken()
			l := Lease{ID: NewID(), User: "alice", IP: netip.MustParseAddr("10.200.0.1"), Port: 22,
				Created: time.Now(), Expires: time.Now().Add(time.Hour), TokenHash: hash}
			b.ResetTimer()
			for range b.N {
				if _, err := f.Append(Change{Add: []Lease{l}, Floors: map[string]uint64{"alice": 1}}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			f.Close()
		})
	}
}
