package ping

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

// probe is one echo request and what became of it. Results are recorded
// as they happen and judged afterwards.
type probe struct {
	Seq int
	At  time.Duration // when it was sent (or its send failed), since the start
	RTT time.Duration // round-trip time, when OK
	OK  bool          // a reply came back
	Err string        // why it could not be sent, or the ICMP error received
}

// record collects the probes of one run; local pings fill it from
// pro-bing's callbacks, which run on several goroutines.
type record struct {
	mu         sync.Mutex
	start      time.Time
	probes     []probe
	duplicates int
	lastErr    string
	onReply    func(received, sent int)
}

func newRecord() *record { return &record{start: time.Now()} }

// add appends a probe and returns its index.
func (r *record) add(p probe) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.Seq = len(r.probes) + 1
	r.probes = append(r.probes, p)
	if p.Err != "" {
		r.lastErr = p.Err
	}
	return len(r.probes) - 1
}

func (r *record) reply(i int, rtt time.Duration) {
	r.mu.Lock()
	if i < 0 || i >= len(r.probes) || r.probes[i].OK {
		r.mu.Unlock()
		return
	}
	r.probes[i].OK, r.probes[i].RTT = true, rtt
	recv, sent := 0, len(r.probes)
	for _, p := range r.probes {
		if p.OK {
			recv++
		}
	}
	cb := r.onReply
	r.mu.Unlock()
	if cb != nil {
		cb(recv, sent)
	}
}

func (r *record) duplicate() {
	r.mu.Lock()
	r.duplicates++
	r.mu.Unlock()
}

func (r *record) fail(err string) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}

func (r *record) snapshot() ([]probe, int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]probe(nil), r.probes...), r.duplicates, r.lastErr
}

// stats is the verdict computed from a record.
type stats struct {
	Sent, Received, Lost, Duplicates, Errors int
	LossPct                                  float64
	Min, Avg, Max, StdDev                    time.Duration
	FirstReply                               time.Duration // -1: none
	LongestOutage                            time.Duration
	Outages                                  int
	LastErr                                  string
}

// summarize computes the statistics of probes. A probe is lost when no
// reply came back; an outage is a run of lost probes, lasting from the
// first of them to the next probe that got a reply (or one interval past
// the last probe when none did).
func summarize(probes []probe, duplicates int, lastErr string, interval time.Duration) stats {
	s := stats{Sent: len(probes), Duplicates: duplicates, FirstReply: -1, LastErr: lastErr}
	var sum, sumSq float64
	outageStart := time.Duration(-1)
	endOutage := func(at time.Duration) {
		if outageStart < 0 {
			return
		}
		s.Outages++
		if d := at - outageStart; d > s.LongestOutage {
			s.LongestOutage = d
		}
		outageStart = -1
	}
	for _, p := range probes {
		if p.Err != "" {
			s.Errors++
		}
		if !p.OK {
			if outageStart < 0 {
				outageStart = p.At
			}
			continue
		}
		endOutage(p.At)
		s.Received++
		if s.FirstReply < 0 {
			s.FirstReply = p.At + p.RTT
		}
		if s.Received == 1 || p.RTT < s.Min {
			s.Min = p.RTT
		}
		if p.RTT > s.Max {
			s.Max = p.RTT
		}
		ms := float64(p.RTT)
		sum += ms
		sumSq += ms * ms
	}
	if len(probes) > 0 {
		endOutage(probes[len(probes)-1].At + interval)
	}
	s.Lost = s.Sent - s.Received
	s.LossPct = 100
	if s.Sent > 0 {
		s.LossPct = math.Round(float64(s.Lost)/float64(s.Sent)*100*100) / 100
	}
	if s.Received > 0 {
		n := float64(s.Received)
		mean := sum / n
		s.Avg = time.Duration(mean)
		s.StdDev = time.Duration(math.Sqrt(math.Max(0, sumSq/n-mean*mean)))
	}
	return s
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// publish sets the outputs and the evidence of a finished run.
func publish(env *steps.Env, address, where string, probes []probe, s stats) {
	env.SetOutput("address", address)
	env.SetOutput("sent", s.Sent)
	env.SetOutput("received", s.Received)
	env.SetOutput("lost", s.Lost)
	env.SetOutput("loss_pct", s.LossPct)
	env.SetOutput("duplicates", s.Duplicates)
	env.SetOutput("errors", s.Errors)
	env.SetOutput("rtt_min_ms", ms(s.Min))
	env.SetOutput("rtt_avg_ms", ms(s.Avg))
	env.SetOutput("rtt_max_ms", ms(s.Max))
	env.SetOutput("rtt_stddev_ms", ms(s.StdDev))
	first := -1.0
	if s.FirstReply >= 0 {
		first = ms(s.FirstReply)
	}
	env.SetOutput("first_reply_ms", first)
	env.SetOutput("longest_outage_ms", ms(s.LongestOutage))
	env.SetOutput("outages", s.Outages)
	env.SetOutput("error", s.LastErr)

	var rtts, lost []float64
	var marks []steps.Mark
	prevOK := true
	for _, p := range probes {
		x := math.Round(p.At.Seconds()*1000) / 1000
		if p.OK {
			rtts = append(rtts, x, ms(p.RTT))
		} else {
			lost = append(lost, x, 0)
			if prevOK && len(marks) < 20 {
				label := "loss from seq " + strconv.Itoa(p.Seq)
				if p.Err != "" {
					label += ": " + p.Err
				}
				marks = append(marks, steps.Mark{X: x, Label: label})
			}
		}
		prevOK = p.OK
	}
	env.AddEvidence(steps.Evidence{
		Kind:  "series",
		Title: fmt.Sprintf("ping %s from %s: round-trip time per echo request", address, where),
		Series: []steps.Series{
			{Name: "rtt", XUnit: "s", YUnit: "ms", Points: rtts},
			{Name: "lost", XUnit: "s", YUnit: "ms", Points: lost},
		},
		Marks: marks,
	})
	env.AddEvidence(steps.TableEvidence("ping "+address+" from "+where,
		[]string{"sent", "received", "loss %", "rtt min/avg/max/stddev ms", "longest outage ms", "errors"},
		[][]string{{strconv.Itoa(s.Sent), strconv.Itoa(s.Received), strconv.FormatFloat(s.LossPct, 'f', -1, 64),
			fmt.Sprintf("%.3f/%.3f/%.3f/%.3f", ms(s.Min), ms(s.Avg), ms(s.Max), ms(s.StdDev)),
			strconv.FormatFloat(ms(s.LongestOutage), 'f', -1, 64), strconv.Itoa(s.Errors)}}))
}
