package reports

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Console prints progress. In plain mode (not a terminal, CI, NO_COLOR) it
// writes one line per event, stable for log scrapers. In live mode it also
// keeps a bottom region with a spinner and elapsed time for every running
// step, redrawn in place.
type Console struct {
	w      io.Writer
	live   bool
	color  bool
	prefix bool // several scenarios at once: prefix lines with the scenario

	mu        sync.Mutex
	names     map[int]string
	running   map[string]*liveStep
	drawn     int // lines of the live region currently on screen
	stop      chan struct{}
	stopped   chan struct{}
	frame     int
	closeOnce sync.Once
}

type liveStep struct {
	scenario string
	id, uses string
	start    time.Time
	status   string
}

// ConsoleOptions configures a Console.
type ConsoleOptions struct {
	Live     bool // terminal: spinner and in-place redraw
	Color    bool
	Parallel bool
}

// NewConsole returns a console sink writing to w.
func NewConsole(w io.Writer, o ConsoleOptions) *Console {
	c := &Console{
		w: w, live: o.Live, color: o.Color, prefix: o.Parallel,
		names: map[int]string{}, running: map[string]*liveStep{},
		stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	if c.live {
		go c.tick()
	} else {
		close(c.stopped)
	}
	return c
}

// Close stops the live redraw and clears the live region.
func (c *Console) Close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.stopped
		c.mu.Lock()
		c.clearLive()
		c.mu.Unlock()
	})
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func (c *Console) tick() {
	defer close(c.stopped)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.mu.Lock()
			c.frame++
			c.redraw(nil)
			c.mu.Unlock()
		}
	}
}

const (
	ansiReset  = "\x1b[0m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiDim    = "\x1b[2m"
	ansiBold   = "\x1b[1m"
)

func (c *Console) paint(code, s string) string {
	if !c.color {
		return s
	}
	return code + s + ansiReset
}

// Emit prints an event.
func (c *Console) Emit(ev *Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lines []string
	key := ""
	if ev.Step != nil {
		key = fmt.Sprintf("%d/%s/%s", ev.Scenario, ev.Step.Phase, ev.Step.ID)
	}
	switch ev.Type {
	case EventScenarioStart:
		if ev.ScenarioInfo != nil {
			c.names[ev.Scenario] = ev.ScenarioInfo.Name
			lines = append(lines, c.paint(ansiBold, "▶ "+ev.ScenarioInfo.Name)+c.paint(ansiDim, "  "+ev.ScenarioInfo.File))
		}
	case EventStepStart:
		c.running[key] = &liveStep{scenario: c.names[ev.Scenario], id: ev.Step.ID, uses: ev.Step.Uses, start: ev.Time}
		if !c.live && ev.Step.Background {
			lines = append(lines, c.stepLine(ev.Scenario, "START", ev.Step, "running in background"))
		}
		if !c.live && ev.Step.Attempt > 1 {
			lines = append(lines, c.stepLine(ev.Scenario, "RETRY", ev.Step, fmt.Sprintf("attempt %d", ev.Step.Attempt)))
		}
	case EventStepLog:
		if ls := c.running[key]; ls != nil && c.live {
			ls.status = ev.Line
		} else if !c.live {
			lines = append(lines, c.stepLine(ev.Scenario, "LOG", ev.Step, ev.Line))
		}
	case EventStepEnd:
		delete(c.running, key)
		lines = append(lines, c.stepLine(ev.Scenario, c.verdict(ev.Result.Status), ev.Step, resultDetail(ev.Result)))
	case EventScenarioEnd:
		name := c.names[ev.Scenario]
		msg := fmt.Sprintf("■ %s %s", name, strings.ToUpper(ev.Status))
		if ev.Error != "" {
			msg += ": " + ev.Error
		}
		lines = append(lines, c.paint(statusColor(ev.Status), msg))
	case EventRunEnd:
		lines = append(lines, c.paint(ansiBold+statusColor(ev.Status), "run "+strings.ToUpper(ev.Status)))
	}
	c.redraw(lines)
}

// Progress updates the live status of a running step without an event.
func (c *Console) Progress(scenario int, phase, id, status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ls := c.running[fmt.Sprintf("%d/%s/%s", scenario, phase, id)]; ls != nil {
		ls.status = status
	}
}

func statusColor(status string) string {
	switch status {
	case StatusPassed:
		return ansiGreen
	case StatusSkipped:
		return ansiYellow
	default:
		return ansiRed
	}
}

func (c *Console) verdict(status string) string {
	switch status {
	case StatusPassed:
		return "PASS"
	case StatusFailed:
		return "FAIL"
	case StatusSkipped:
		return "SKIP"
	default:
		return "ERROR"
	}
}

func (c *Console) stepLine(scenario int, verdict string, st *StepInfo, detail string) string {
	var b strings.Builder
	b.WriteString("  ")
	if c.prefix {
		b.WriteString("[" + c.names[scenario] + "] ")
	}
	code := ansiDim
	switch verdict {
	case "PASS":
		code = ansiGreen
	case "FAIL", "ERROR":
		code = ansiRed
	case "SKIP", "RETRY":
		code = ansiYellow
	}
	b.WriteString(c.paint(code, fmt.Sprintf("%-5s", verdict)))
	id := st.ID
	if l := PhaseLabel(st.Phase); l != "" {
		id = strings.ReplaceAll(l, " ", "_") + ":" + id
	}
	fmt.Fprintf(&b, " %-20s %-20s", id, st.Uses)
	if detail != "" {
		b.WriteString(" " + detail)
	}
	return strings.TrimRight(b.String(), " ")
}

func resultDetail(r *StepResult) string {
	d := FormatDuration(time.Duration(r.DurationMS) * time.Millisecond)
	if r.Attempts > 1 {
		d += fmt.Sprintf(" after %d attempts", r.Attempts)
	}
	switch r.Status {
	case StatusSkipped:
		return r.SkipReason
	case StatusPassed:
		return d
	}
	if r.Error != "" {
		d += "  " + r.Error
	}
	for _, e := range r.Expectations {
		if !e.OK {
			return d + "  expected " + ExpectationText(e)
		}
	}
	return d
}

// FormatDuration prints durations the way people read them: 12ms, 3.4s, 2m05s.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
}

// clearLive erases the live region; the caller holds c.mu.
func (c *Console) clearLive() {
	if c.drawn > 0 {
		fmt.Fprintf(c.w, "\x1b[%dA\x1b[J", c.drawn)
		c.drawn = 0
	}
}

// redraw prints permanent lines, then (live mode) the running steps below
// them. The caller holds c.mu.
func (c *Console) redraw(lines []string) {
	if !c.live {
		for _, l := range lines {
			fmt.Fprintln(c.w, l)
		}
		return
	}
	var b strings.Builder
	if c.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\x1b[J", c.drawn)
	}
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	keys := make([]string, 0, len(c.running))
	for k := range c.running {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	now := time.Now()
	for _, k := range keys {
		ls := c.running[k]
		line := fmt.Sprintf("  %s %-20s %-20s %s", spinner[c.frame%len(spinner)], ls.id, ls.uses,
			FormatDuration(now.Sub(ls.start)))
		if c.prefix {
			line = "  [" + ls.scenario + "]" + line
		}
		if ls.status != "" {
			line += "  " + ls.status
		}
		b.WriteString(c.paint(ansiDim, truncate(line, 160)) + "\n")
	}
	c.drawn = len(keys)
	io.WriteString(c.w, b.String())
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
