package db

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// history is what the op log says happened, folded into a compact form:
// one byte per write (its outcome, and how many rows the database holds
// for it), the acknowledgement instants, and per-second counts. A million
// writes cost about 9 MB.
type history struct {
	header  opLogHeader
	ended   bool
	writers []*writerHistory
	byCycle map[string]*writerHistory

	acks    []int64 // completion instants of acknowledged writes, µs
	firstT  int64   // first record, µs
	lastT   int64   // last record, µs
	ackSec  []int   // acknowledged writes completed per second
	errSec  []int   // failed or unknown writes completed per second
	firstEr int64   // first failed or unknown completion, -1 if none
	lastEr  int64   // last failed or unknown completion, -1 if none

	// Rows whose cycle belongs to the run but to no writer of the log.
	strangers       int
	strangerSamples []string
}

// Write outcomes in the low three bits of a state byte; the number of
// rows found in the database (saturating at 31) in the high five.
const (
	stNone    = 0
	stInvoked = 1
	stOK      = 2
	stFail    = 3
	stUnknown = 4
	stMask    = 7
	seenUnit  = 8
	seenMax   = 31
)

type writerHistory struct {
	cycle                                string
	state                                []byte // index: counter
	attempted, acked, failed, unknown    int64
	maxAcked, maxInDB                    int64
	unexpected                           int64
	unexpectedSamples, lostSamples       []int64
	lost, recovered, dups, failedPresent int64
	unknownAbsent                        int64
}

// loadHistory reads an op log.
func loadHistory(r io.Reader) (*history, error) {
	rd, err := newOpLogReader(r)
	if err != nil {
		return nil, err
	}
	h := &history{header: rd.Header, firstT: -1, firstEr: -1, lastEr: -1, byCycle: map[string]*writerHistory{}}
	for _, c := range rd.Header.Cycles {
		w := &writerHistory{cycle: c}
		h.writers = append(h.writers, w)
		h.byCycle[c] = w
	}
	var rec opRecord
	for {
		ok, err := rd.next(&rec)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if err := h.add(rec); err != nil {
			return nil, err
		}
	}
	h.ended = rd.Ended
	return h, nil
}

func (h *history) add(rec opRecord) error {
	if rec.V < 1 {
		return fmt.Errorf("op log: counter %d of writer %d: counters start at 1", rec.V, rec.P)
	}
	w := h.writers[rec.P]
	for int64(len(w.state)) <= rec.V {
		w.state = append(w.state, stNone)
	}
	if h.firstT < 0 {
		h.firstT = rec.T
	}
	h.lastT = max(h.lastT, rec.T)
	sec := int(rec.T / 1e6)
	switch rec.Type {
	case opInvoke:
		w.attempted++
		w.state[rec.V] = stInvoked
		return nil
	case opOK:
		w.acked++
		w.state[rec.V] = stOK
		w.maxAcked = max(w.maxAcked, rec.V)
		h.acks = append(h.acks, rec.T)
		h.ackSec = bump(h.ackSec, sec)
		return nil
	case opFail:
		w.failed++
		w.state[rec.V] = stFail
	case opUnknown:
		w.unknown++
		w.state[rec.V] = stUnknown
	default:
		return fmt.Errorf("op log: unknown op type %q", rec.Type)
	}
	h.errSec = bump(h.errSec, sec)
	if h.firstEr < 0 {
		h.firstEr = rec.T
	}
	h.lastEr = max(h.lastEr, rec.T)
	return nil
}

func bump(s []int, i int) []int {
	for len(s) <= i {
		s = append(s, 0)
	}
	s[i]++
	return s
}

const maxSamples = 20

// observe accounts for one row the database holds for this run.
func (h *history) observe(cycle string, counter int64) {
	w, ok := h.byCycle[cycle]
	if !ok {
		h.strangers++
		if len(h.strangerSamples) < maxSamples {
			h.strangerSamples = append(h.strangerSamples, fmt.Sprintf("%s/%d", cycle, counter))
		}
		return
	}
	w.maxInDB = max(w.maxInDB, counter)
	if counter < 1 || counter >= int64(len(w.state)) || w.state[counter]&stMask == stNone {
		w.unexpected++
		if len(w.unexpectedSamples) < maxSamples {
			w.unexpectedSamples = append(w.unexpectedSamples, counter)
		}
		return
	}
	if seen := w.state[counter] / seenUnit; seen < seenMax {
		w.state[counter] += seenUnit
	}
}

// judge compares what was acknowledged with what the database holds.
func (h *history) judge() {
	for _, w := range h.writers {
		for c := 1; c < len(w.state); c++ {
			st, seen := w.state[c]&stMask, int64(w.state[c]/seenUnit)
			if seen > 1 {
				w.dups += seen - 1
			}
			switch {
			case st == stOK && seen == 0:
				w.lost++
				if len(w.lostSamples) < maxSamples {
					w.lostSamples = append(w.lostSamples, int64(c))
				}
			case (st == stUnknown || st == stInvoked) && seen > 0:
				w.recovered++
			case (st == stUnknown || st == stInvoked) && seen == 0:
				w.unknownAbsent++
			case st == stFail && seen > 0:
				w.failedPresent++
			}
		}
	}
}

// totals of the judged history.
type totals struct {
	attempted, acked, failed, unknown                int64
	lost, recovered, unexpected, dups, failedPresent int64
	unknownAbsent                                    int64
}

func (h *history) totals() totals {
	var t totals
	for _, w := range h.writers {
		t.attempted += w.attempted
		t.acked += w.acked
		t.failed += w.failed
		t.unknown += w.unknown
		t.lost += w.lost
		t.recovered += w.recovered
		t.unexpected += w.unexpected
		t.dups += w.dups
		t.failedPresent += w.failedPresent
		t.unknownAbsent += w.unknownAbsent
	}
	t.unexpected += int64(h.strangers)
	return t
}

// downtime is the longest stretch without an acknowledged write.
type downtime struct {
	startUS, endUS int64 // µs since the flood started
	resumed        bool  // writes were acknowledged again after it
}

func (d downtime) ms() float64 { return float64(d.endUS-d.startUS) / 1000 }

// downtime finds the longest gap between consecutive acknowledged writes,
// across writers. A stretch of errors before the first or after the last
// acknowledgement counts too (from the first record, or to the last): if
// writes never came back, the gap is open and resumed is false.
func (h *history) downtime() downtime {
	if len(h.acks) == 0 {
		return downtime{startUS: max(h.firstT, 0), endUS: max(h.lastT, 0)}
	}
	slices.Sort(h.acks)
	var best downtime
	if h.firstEr >= 0 && h.firstEr < h.acks[0] {
		best = downtime{startUS: h.firstT, endUS: h.acks[0], resumed: true}
	}
	for i := 1; i < len(h.acks); i++ {
		if g := h.acks[i] - h.acks[i-1]; g > best.endUS-best.startUS {
			best = downtime{startUS: h.acks[i-1], endUS: h.acks[i], resumed: true}
		}
	}
	last := h.acks[len(h.acks)-1]
	if h.lastEr > last && h.lastEr-last > best.endUS-best.startUS {
		best = downtime{startUS: last, endUS: h.lastEr, resumed: false}
	}
	return best
}

// lostText lists lost counters per writer for the evidence log.
func (h *history) lostText() string {
	var b strings.Builder
	for _, w := range h.writers {
		if w.lost == 0 && w.unexpected == 0 && w.failedPresent == 0 && w.dups == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s: lost %d", w.cycle, w.lost)
		if len(w.lostSamples) > 0 {
			fmt.Fprintf(&b, " (counters %s%s)", joinInts(w.lostSamples), more(w.lost, len(w.lostSamples)))
		}
		if w.unexpected > 0 {
			fmt.Fprintf(&b, "; unexpected %d (counters %s%s)", w.unexpected, joinInts(w.unexpectedSamples), more(w.unexpected, len(w.unexpectedSamples)))
		}
		if w.dups > 0 {
			fmt.Fprintf(&b, "; duplicates %d", w.dups)
		}
		if w.failedPresent > 0 {
			fmt.Fprintf(&b, "; present although the server refused them %d", w.failedPresent)
		}
		b.WriteByte('\n')
	}
	if h.strangers > 0 {
		fmt.Fprintf(&b, "rows of this run written by no writer: %d (%s%s)\n", h.strangers, strings.Join(h.strangerSamples, ", "), more(int64(h.strangers), len(h.strangerSamples)))
	}
	return b.String()
}

func joinInts(v []int64) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

func more(total int64, shown int) string {
	if total > int64(shown) {
		return fmt.Sprintf(", … %d more", total-int64(shown))
	}
	return ""
}
