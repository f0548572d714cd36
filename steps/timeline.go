package steps

import (
	"sort"
	"sync"
	"time"
)

// Moment is a labelled instant on a scenario's timeline that several steps
// must line up: db.failover notes when it triggered and completed,
// dns.watch measures its switch from the trigger and notes the switch,
// db.verify draws them all on its chart.
type Moment struct {
	Kind  string    // e.g. failover.trigger, failover.complete, dns.switch
	Label string    // what a chart shows
	Step  string    // id of the step that noted it
	At    time.Time // wall clock, monotonic reading stripped
	// Data is what the noting step knows of the moment for later steps
	// (db.failover: the writers before and after); JSON-friendly values.
	Data map[string]any
}

// Timeline holds one scenario's moments. The runner gives every step of a
// scenario the same Timeline through Hooks; it is safe for the concurrent
// use of background steps. The zero value is ready to use.
type Timeline struct {
	mu      sync.Mutex
	moments []Moment
}

// Note adds a moment.
func (t *Timeline) Note(m Moment) {
	m.At = m.At.Round(0)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.moments = append(t.moments, m)
}

// Moments returns the moments so far, in time order.
func (t *Timeline) Moments() []Moment {
	t.mu.Lock()
	out := append([]Moment(nil), t.moments...)
	t.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// Latest returns the latest moment of kind at or before t.
func (t *Timeline) Latest(kind string, at time.Time) (Moment, bool) {
	var best Moment
	found := false
	for _, m := range t.Moments() {
		if m.Kind == kind && !m.At.After(at) {
			best, found = m, true
		}
	}
	return best, found
}
