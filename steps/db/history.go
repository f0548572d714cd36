package db

import (
	"fmt"
	"io"
	"math"
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

	// servers are the addresses the writers connected to, in order.
	servers []string
}

// Write outcomes in the low three bits of a state byte; bit 3 says a row
// with the write's counter but another row id was found; the number of
// rows found that are the write (saturating at 15) is in the high four.
const (
	stNone    = 0
	stInvoked = 1
	stOK      = 2
	stFail    = 3
	stUnknown = 4
	stMask    = 7
	stForeign = 8
	seenUnit  = 16
	seenMax   = 15
)

type writerHistory struct {
	cycle string
	state []byte // index: counter
	// ids are the row ids the server acknowledged (index: counter; 0: none
	// known). The runbook's id column is int(10) unsigned, so 4 bytes do.
	ids                                  []uint32
	attempted, acked, failed, unknown    int64
	maxAcked, maxInDB                    int64
	unexpected                           int64
	unexpectedSamples, lostSamples       []int64
	lost, recovered, dups, failedPresent int64
	unknownAbsent                        int64
	// foreignRows have an acknowledged write's counter but not its row id;
	// standIns are those whose write is missing (a leftover row standing
	// in for a lost one).
	foreignRows, standIns int64
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
			return nil, fmt.Errorf("op log line %d: %w", rd.line, err)
		}
	}
	h.ended = rd.Ended
	return h, nil
}

func (h *history) add(rec opRecord) error {
	if rec.Type == opServer {
		if !slices.Contains(h.servers, rec.Addr) && len(h.servers) < maxServers {
			h.servers = append(h.servers, rec.Addr)
		}
		return nil
	}
	if rec.V < 1 {
		return fmt.Errorf("counter %d of writer %d: counters start at 1", rec.V, rec.P)
	}
	w := h.writers[rec.P]
	// A writer's counter grows by one per write, so a record is at most
	// one past the highest counter so far; anything else is damage, and
	// must not make the checker allocate for it.
	if next := max(int64(len(w.state)), 1); rec.V > next {
		return fmt.Errorf("counter %d of writer %d jumps past %d: a writer's counters grow by one; the op log is damaged", rec.V, rec.P, next-1)
	}
	if int64(len(w.state)) <= rec.V {
		w.state = append(w.state, stNone)
		w.ids = append(w.ids, 0)
		if len(w.state) == 1 {
			w.state = append(w.state, stNone)
			w.ids = append(w.ids, 0)
		}
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
		if rec.ID < 0 || rec.ID > math.MaxUint32 {
			return fmt.Errorf("row id %d of writer %d counter %d is out of the id column's range", rec.ID, rec.P, rec.V)
		}
		w.acked++
		w.state[rec.V] = stOK
		w.ids[rec.V] = uint32(rec.ID)
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

const (
	maxSamples = 20
	maxServers = 64
)

// observe accounts for one row the database holds for this run. A row
// whose counter was acknowledged with another row id is not that write
// (a leftover of an earlier run, or a row written by someone else): it
// counts as unexpected, and the acknowledged write stays missing.
func (h *history) observe(id int64, cycle string, counter int64) {
	w, ok := h.byCycle[cycle]
	if !ok {
		h.strangers++
		if len(h.strangerSamples) < maxSamples {
			h.strangerSamples = append(h.strangerSamples, fmt.Sprintf("%s/%d", cycle, counter))
		}
		return
	}
	w.maxInDB = max(w.maxInDB, counter)
	if counter >= 1 && counter < int64(len(w.state)) && w.state[counter]&stMask == stOK && w.ids[counter] != 0 && int64(w.ids[counter]) != id {
		w.state[counter] |= stForeign
		w.foreignRows++
		return
	}
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
				if w.state[c]&stForeign != 0 {
					w.standIns++
					if len(w.unexpectedSamples) < maxSamples {
						w.unexpectedSamples = append(w.unexpectedSamples, int64(c))
					}
				}
			case (st == stUnknown || st == stInvoked) && seen > 0:
				w.recovered++
			case (st == stUnknown || st == stInvoked) && seen == 0:
				w.unknownAbsent++
			case st == stFail && seen > 0:
				w.failedPresent++
			}
		}
		// A row with an acknowledged write's counter but another id is
		// not that write: unexpected when the write is missing, a
		// duplicate when it is there too.
		w.unexpected += w.standIns
		w.dups += w.foreignRows - w.standIns
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
	pinned         bool  // the flood wrote to one address it resolved once
}

func (d downtime) ms() float64 { return float64(d.endUS-d.startUS) / 1000 }

// unresumedNote explains, after "writes never resumed", why a pinned flood
// is expected not to resume: it keeps writing to the address it resolved
// first, and after a failover that server is read-only or gone. Empty when
// writes resumed or the flood followed the endpoint.
func (d downtime) unresumedNote() string {
	if d.resumed || !d.pinned {
		return ""
	}
	return " on the address the flood was pinned to (expected: the old primary takes no writes after a failover)"
}

// downtime finds the longest stretch without an acknowledged write that
// ends after the failover instant since (µs since the flood started;
// math.MinInt64: anywhere): a gap between consecutive acknowledged writes
// across writers, a stretch of errors before the first acknowledgement
// (from the first record), or after the last one (to the last record). It
// is resumed only when acknowledged writes follow it, which after a
// failover means they follow the failover.
func (h *history) downtime(since int64) downtime {
	d := h.longestGap(since)
	d.pinned = h.header.Pinned
	return d
}

func (h *history) longestGap(since int64) downtime {
	if len(h.acks) == 0 {
		return downtime{startUS: max(h.firstT, 0), endUS: max(h.lastT, 0)}
	}
	slices.Sort(h.acks)
	var best downtime
	found := false
	consider := func(d downtime) {
		if d.endUS > since && (!found || d.endUS-d.startUS > best.endUS-best.startUS) {
			best, found = d, true
		}
	}
	if h.firstEr >= 0 && h.firstEr < h.acks[0] {
		consider(downtime{startUS: h.firstT, endUS: h.acks[0], resumed: true})
	}
	for i := 1; i < len(h.acks); i++ {
		consider(downtime{startUS: h.acks[i-1], endUS: h.acks[i], resumed: true})
	}
	last := h.acks[len(h.acks)-1]
	if h.lastEr > last {
		consider(downtime{startUS: last, endUS: h.lastEr, resumed: false})
	}
	if !found {
		// Nothing acknowledged or failed after the failover: the gap runs
		// from the last acknowledgement to the end of the history.
		return downtime{startUS: last, endUS: max(h.lastT, last), resumed: false}
	}
	return best
}

// acksAround reports whether writes were acknowledged before and after x
// (µs since the flood started), and whether any write was still recorded
// after it.
func (h *history) acksAround(x int64) (before, after, activeAfter bool) {
	if len(h.acks) == 0 {
		return false, false, h.lastT > x
	}
	slices.Sort(h.acks)
	return h.acks[0] < x, h.acks[len(h.acks)-1] > x, h.lastT > x
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
