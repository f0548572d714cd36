package portgate_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	pgt "github.com/opsdrill/opsdrill/portgate/portgatetest"
)

// The benchmarks run the real daemon in network namespaces (root needed)
// and report percentiles as custom metrics; each b.N iteration is a batch
// of samples, so -benchtime 3x gives three batches:
//
//	go test -run '^$' -bench . -benchtime 3x ./portgate/

// benchUsers adds n users u0..u(n-1) with the test key, allowed to state
// an address: each user can open once per time step, and stated addresses
// make distinct rules.
func benchUsers(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "  - {name: u%d, secret: %s, stated_ip: true}\n", i, pgt.SecretB32)
	}
	return b.String()
}

type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// opener hands out users so no code is ever replayed: user k opens once,
// and users cycle only after a full time step.
type opener struct {
	g    *pgt.Gate
	next int
	n    int
}

func (o *opener) user() string {
	if o.next == o.n {
		// Every user has opened in this step: wait for the next one.
		time.Sleep(time.Until(time.Unix((time.Now().Unix()/30+1)*30, 0)))
		o.next = 0
	}
	u := fmt.Sprintf("u%d", o.next)
	o.next++
	return u
}

// BenchmarkOpenToReachable measures, per backend, the time from sending
// the open request to the first accepted connection to the guarded port,
// then closes the lease (so every sample starts closed). Target: p99 under
// 50 ms.
func BenchmarkOpenToReachable(b *testing.B) {
	const batch = 100
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			g := pgt.Start(b, pgt.Options{Backend: backend, Extra: benchUsers(2 * batch)})
			n := g.Net
			op := &opener{g: g, n: 2 * batch}
			client := g.Client(n.C1)
			svc := net.JoinHostPort(n.GateIP1, fmt.Sprint(pgt.SvcPort))
			var lat, api latencies
			b.ResetTimer()
			for range b.N {
				for range batch {
					body := fmt.Sprintf(`{"user":%q,"code":%q,"port":%d}`, op.user(), g.Code(0), pgt.SvcPort)
					start := time.Now()
					resp, err := client.Post(g.URL(n.GateIP1)+"/v1/leases", "application/json", strings.NewReader(body))
					if err != nil {
						b.Fatal(err)
					}
					answered := time.Since(start)
					var tok, id string
					if resp.StatusCode == http.StatusCreated {
						tok, id = readLease(b, resp)
					} else {
						b.Fatalf("open: %d", resp.StatusCode)
					}
					for !n.C1.Probe(svc, 200*time.Millisecond) {
						if time.Since(start) > 10*time.Second {
							b.Fatal("never reachable")
						}
					}
					lat = append(lat, time.Since(start))
					api = append(api, answered)
					closeLease(b, client, g.URL(n.GateIP1), id, tok)
				}
			}
			b.StopTimer()
			b.ReportMetric(ms(lat.pct(0.50)), "p50-ms")
			b.ReportMetric(ms(lat.pct(0.99)), "p99-ms")
			b.ReportMetric(ms(api.pct(0.50)), "api-p50-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkExpiryPrecision opens short leases and probes until each is
// closed, recording the first closed probe's start minus the lease end.
// Target: within 1 s.
func BenchmarkExpiryPrecision(b *testing.B) {
	const batch = 5
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			g := pgt.Start(b, pgt.Options{Backend: backend, Extra: benchUsers(batch)})
			n := g.Net
			op := &opener{g: g, n: batch}
			svc := net.JoinHostPort(n.GateIP1, fmt.Sprint(pgt.SvcPort))
			var late latencies
			b.ResetTimer()
			for range b.N {
				for range batch {
					r := g.Open(n.C1, n.GateIP1, map[string]any{"user": op.user(), "code": g.Code(0), "port": pgt.SvcPort, "duration": "2s"})
					if r.Status != http.StatusCreated {
						b.Fatalf("open: %v", r.Body)
					}
					end := r.Expires()
					for {
						start := time.Now()
						if !n.C1.Probe(svc, 50*time.Millisecond) {
							late = append(late, start.Sub(end))
							break
						}
						time.Sleep(5 * time.Millisecond)
					}
				}
			}
			b.StopTimer()
			abs := make(latencies, len(late))
			for i, d := range late {
				abs[i] = max(d, -d)
			}
			b.ReportMetric(ms(late.pct(0.50)), "p50-late-ms")
			b.ReportMetric(ms(abs.pct(1)), "max-abs-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkOpenWith1000Leases compares the open request's latency with no
// other lease and with 1,000 live leases (1,000 distinct rules: stated
// addresses), per backend. Target: no slowdown that matters.
func BenchmarkOpenWith1000Leases(b *testing.B) {
	const live, batch = 1000, 50
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			g := pgt.Start(b, pgt.Options{Backend: backend, Extra: benchUsers(live + 2*batch)})
			n := g.Net
			client := g.Client(n.C1)
			measure := func(users []string) latencies {
				var out latencies
				for _, u := range users {
					body := fmt.Sprintf(`{"user":%q,"code":%q,"port":%d,"duration":"10m"}`, u, g.Code(0), pgt.SvcPort)
					start := time.Now()
					resp, err := client.Post(g.URL(n.GateIP1)+"/v1/leases", "application/json", strings.NewReader(body))
					if err != nil {
						b.Fatal(err)
					}
					if resp.StatusCode != http.StatusCreated {
						b.Fatalf("open: %d", resp.StatusCode)
					}
					out = append(out, time.Since(start))
					tok, id := readLease(b, resp)
					closeLease(b, client, g.URL(n.GateIP1), id, tok)
				}
				return out
			}
			users := func(from, count int) []string {
				var out []string
				for i := from; i < from+count; i++ {
					out = append(out, fmt.Sprintf("u%d", i))
				}
				return out
			}
			var empty, full latencies
			var fill time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				waitFreshStep()
				b.StartTimer()
				empty = append(empty, measure(users(live, batch))...)
				b.StopTimer()
				// 1,000 leases for 1,000 addresses: 1,000 rules.
				fillStart := time.Now()
				for i := range live {
					body := fmt.Sprintf(`{"user":"u%d","code":%q,"port":%d,"duration":"10m","ip":"10.100.%d.%d"}`,
						i, g.Code(0), pgt.SvcPort, i/250, i%250+1)
					resp, err := client.Post(g.URL(n.GateIP1)+"/v1/leases", "application/json", strings.NewReader(body))
					if err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						b.Fatalf("fill %d: %d", i, resp.StatusCode)
					}
				}
				fill = time.Since(fillStart)
				if len(g.State().Leases) < live {
					b.Fatalf("only %d leases", len(g.State().Leases))
				}
				b.StartTimer()
				full = append(full, measure(users(live+batch, batch))...)
				b.StopTimer()
				// Start over: the restart finds 1,000 rules without a
				// lease and removes them.
				_ = g.Kill(syscall.SIGKILL)
				if err := os.Remove(filepath.Join(g.Dir, "state", "state.json")); err != nil {
					b.Fatal(err)
				}
				g.Start()
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(ms(empty.pct(0.50)), "empty-p50-ms")
			b.ReportMetric(ms(empty.pct(0.99)), "empty-p99-ms")
			b.ReportMetric(ms(full.pct(0.50)), "1000-p50-ms")
			b.ReportMetric(ms(full.pct(0.99)), "1000-p99-ms")
			b.ReportMetric(fill.Seconds(), "fill-1000-s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// waitFreshStep waits for the start of a time step when less than 10 s of
// the current one is left, so a batch of opens never straddles one.
func waitFreshStep() {
	left := time.Until(time.Unix((time.Now().Unix()/30+1)*30, 0))
	if left < 25*time.Second {
		time.Sleep(left)
	}
}

// readLease reads a lease's id and token from an open answer.
func readLease(b *testing.B, resp *http.Response) (token, id string) {
	defer resp.Body.Close()
	var l struct{ ID, Token string }
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		b.Fatal(err)
	}
	return l.Token, l.ID
}

func closeLease(b *testing.B, c *http.Client, url, id, token string) {
	req, _ := http.NewRequest(http.MethodDelete, url+"/v1/leases/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("close: %d", resp.StatusCode)
	}
}
