package db

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

// Verify is db.verify: the runbook's "select max(counter) ... where
// cycle=" comparison, made exact. It reads the flood's op log and every
// row of the flood's run on the new primary, and decides per write.
type Verify struct {
	Conn         `yaml:",inline"`
	OpLog        string `yaml:"oplog" doc:"the flood's op log (its oplog output)" required:"true"`
	Table        string `yaml:"table" doc:"table to read (default: the one the op log names)"`
	AllowReplica bool   `yaml:"allow_replica" doc:"verify on a read-only server too (a lagging replica would report false losses)"`
	ReportOnly   bool   `yaml:"report_only" doc:"report the loss counts without failing on them (for drills that measure loss, e.g. async replication); a fault outside the load, the wrong server or split brain still fail"`
	// RequireFailover: a history without a fault proves nothing about a
	// failover.
	RequireFailover bool `yaml:"require_failover" doc:"fail when no failover moment (db.failover's trigger or completion, a lab kill or partition) falls inside the flood's history; false judges a flood alone"`
}

func newVerify() steps.Step { return &Verify{Conn: defaultConn(), RequireFailover: true} }

// Validate checks the parameters.
func (v *Verify) Validate() error {
	if err := v.Conn.Validate(); err != nil {
		return err
	}
	if v.OpLog == "" {
		return fmt.Errorf("oplog: missing; give the flood's op log, e.g. ${{ steps.flood.outputs.oplog }}")
	}
	if v.Table != "" {
		return validTable(v.Table)
	}
	return nil
}

// Run verifies.
func (v *Verify) Run(ctx context.Context, env *steps.Env) error {
	env.Secret(v.password())
	if err := v.loadCA(env); err != nil {
		return err
	}
	f, err := os.Open(env.Path(v.OpLog))
	if err != nil {
		return fmt.Errorf("oplog: %w", err)
	}
	h, err := loadHistory(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("oplog %s: %w", v.OpLog, err)
	}
	if !h.ended {
		env.Logf("the op log has no end line: the flood was cut short; writes without an outcome count as unknown")
	}
	table := v.Table
	if table == "" {
		table = h.header.Table
	}
	if err := validTable(table); err != nil {
		return fmt.Errorf("op log names a bad table: %w", err)
	}

	db, err := v.open()
	if err != nil {
		return err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, v.ConnectTimeout+2*v.ReadTimeout)
	id, err := identity(qctx, db)
	cancel()
	if err != nil {
		return v.explain(err)
	}
	if id.ReadOnly && !v.AllowReplica {
		return fmt.Errorf("dsn: %s (%s, server_id %d) is read-only (%s): verify on the new primary (the endpoint), or set allow_replica",
			v.addr(), id.Hostname, id.ServerID, strings.Join(id.ReadOnlyBy, ", "))
	}
	verifiedAddr, _ := v.resolvedAddr(qctx)
	env.SetOutput("verified_on", map[string]any{"hostname": id.Hostname, "server_id": id.ServerID, "read_only": id.ReadOnly, "address": verifiedAddr})
	env.Logf("verifying run %s of %s on %s (server_id %d)", h.header.Run, table, id.Hostname, id.ServerID)

	// Every row of the run, streamed: the database does the filtering, we
	// keep one byte per write.
	rows, err := db.QueryContext(ctx, "SELECT id, cycle, counter FROM `"+table+"` WHERE cycle LIKE ?", h.header.Run+"-%")
	if err != nil {
		return v.explain(err)
	}
	var cycle string
	var rowID, counter int64
	for rows.Next() {
		if err := rows.Scan(&rowID, &cycle, &counter); err != nil {
			rows.Close()
			return err
		}
		h.observe(rowID, cycle, counter)
	}
	if err := rows.Close(); err != nil {
		return v.explain(err)
	}
	if err := rows.Err(); err != nil {
		return v.explain(err)
	}
	h.judge()
	flt := v.locateFault(env, h)
	var servers []serverCheck
	if flt.found {
		servers = v.checkServers(ctx, env, h, flt, verifiedAddr, id)
	}
	return v.report(env, h, flt, id, servers)
}

func (v *Verify) report(env *steps.Env, h *history, f fault, id Identity, servers []serverCheck) error {
	t := h.totals()
	env.SetOutput("attempted", t.attempted)
	env.SetOutput("acknowledged", t.acked)
	env.SetOutput("failed", t.failed)
	env.SetOutput("unknown", t.unknown)
	env.SetOutput("lost", t.lost)
	env.SetOutput("recovered", t.recovered)
	env.SetOutput("unknown_absent", t.unknownAbsent)
	env.SetOutput("unexpected", t.unexpected)
	env.SetOutput("duplicates", t.dups)
	env.SetOutput("failed_present", t.failedPresent)
	env.SetOutput("oplog_complete", h.ended)

	writers := map[string]any{}
	maxAcked := map[string]any{}
	maxInDB := map[string]any{}
	rows := make([][]string, 0, len(h.writers))
	for _, w := range h.writers {
		lost := make([]any, len(w.lostSamples))
		for i, c := range w.lostSamples {
			lost[i] = c
		}
		writers[w.cycle] = map[string]any{
			"attempted": w.attempted, "acknowledged": w.acked, "failed": w.failed, "unknown": w.unknown,
			"lost": w.lost, "recovered": w.recovered, "unknown_absent": w.unknownAbsent, "unexpected": w.unexpected,
			"duplicates": w.dups, "failed_present": w.failedPresent, "max_acked": w.maxAcked, "max_in_db": w.maxInDB,
			"lost_counters": lost,
		}
		maxAcked[w.cycle] = w.maxAcked
		maxInDB[w.cycle] = w.maxInDB
		match := "yes"
		if w.maxInDB < w.maxAcked {
			match = "NO"
		}
		rows = append(rows, []string{w.cycle, i64(w.attempted), i64(w.acked), i64(w.maxAcked), i64(w.maxInDB), match,
			i64(w.lost), i64(w.recovered), i64(w.unexpected), i64(w.dups)})
	}
	env.SetOutput("writers", writers)
	env.SetOutput("max_acked", maxAcked)
	env.SetOutput("max_in_db", maxInDB)

	d := h.downtime(f.sinceUS())
	start := time.UnixMicro(h.header.StartUnixUS).UTC()
	at := func(us int64) string { return start.Add(time.Duration(us) * time.Microsecond).Format(time.RFC3339Nano) }
	env.SetOutput("write_downtime_ms", d.ms())
	env.SetOutput("downtime_start", at(d.startUS))
	env.SetOutput("downtime_end", at(d.endUS))
	env.SetOutput("downtime_start_s", float64(d.startUS)/1e6)
	env.SetOutput("downtime_end_s", float64(d.endUS)/1e6)
	env.SetOutput("writes_resumed", d.resumed)
	note := d.unresumedNote()
	env.SetOutput("resumed_note", note)

	resumed := "writes resumed"
	if !d.resumed {
		resumed = "writes never resumed" + note
	}
	env.Logf("%d acknowledged: %d lost, %d recovered (unknown but present), %d unexpected, %d duplicates; longest write gap %.1f ms (%s)",
		t.acked, t.lost, t.recovered, t.unexpected, t.dups, d.ms(), resumed)

	// The verdicts beyond loss: the fault met the load, the server read is
	// the new writer, and only one server takes writes.
	var must []string
	env.SetOutput("fault_in_load", f.inLoad)
	env.SetOutput("fault", f.label())
	env.SetOutput("fault_reason", f.reason)
	if !f.inLoad && (v.RequireFailover || f.found) {
		must = append(must, f.why)
	}
	newWriter := true
	if f.complete != nil {
		after, _ := f.complete.Data["writer_after"].(map[string]any)
		if sid, ok := toInt64(after["server_id"]); ok && sid != 0 {
			host, _ := after["hostname"].(string)
			if sid != id.ServerID || (host != "" && host != id.Hostname) {
				newWriter = false
				must = append(must, fmt.Sprintf("verified on %s, not on the new writer %s (server_id %d) that db.failover saw: the DSN reaches the wrong server", id, host, sid))
			}
		} else {
			env.Logf("db.failover recorded no SQL identity of the new writer (give it a dsn): verified_on is not compared with it")
		}
	}
	env.SetOutput("verified_new_writer", newWriter && f.complete != nil)
	split := splitBrain(servers)
	env.SetOutput("split_brain", len(split) > 1)
	writable := make([]any, len(split))
	for i, s := range split {
		writable[i] = s.name()
	}
	env.SetOutput("writable_servers", writable)
	if len(split) > 1 {
		must = append(must, fmt.Sprintf("split brain: %s all take writes", joinServers(split)))
	}
	dnsMS := dnsSwitch(env, f)
	env.SetOutput("dns_switch_ms", dnsMS)
	headline := headlineText(t, d, dnsMS, f, servers, split)
	env.SetOutput("headline", headline)
	env.Logf("%s", headline)

	env.AddEvidence(steps.Evidence{Kind: "log", Title: "The drill in words", Text: headline})
	env.AddEvidence(steps.TableEvidence("Writers: last acknowledged counter vs max(counter) on the new primary (the runbook's check)",
		[]string{"cycle", "attempted", "acknowledged", "max acknowledged", "max(counter) in database", "match", "lost", "recovered", "unexpected", "duplicates"}, rows))
	if len(servers) > 0 {
		env.AddEvidence(serversEvidence(servers))
	}
	env.AddEvidence(v.timeline(env, h, d))
	if text := h.lostText(); text != "" {
		env.AddEvidence(steps.Evidence{Kind: "log", Title: "Writes that break the guarantee", Text: text})
	}

	var bad []string
	if t.lost > 0 {
		bad = append(bad, fmt.Sprintf("%d acknowledged writes lost", t.lost))
	}
	if t.unexpected > 0 {
		bad = append(bad, fmt.Sprintf("%d unexpected rows (never attempted)", t.unexpected))
	}
	if t.dups > 0 {
		bad = append(bad, fmt.Sprintf("%d duplicate rows", t.dups))
	}
	if t.failedPresent > 0 {
		bad = append(bad, fmt.Sprintf("%d rows present although the server refused the write", t.failedPresent))
	}
	if v.ReportOnly {
		bad = nil
	}
	if len(bad) > 0 {
		detail := strings.TrimSpace(h.lostText())
		if i := strings.IndexByte(detail, '\n'); i > 0 {
			detail = detail[:i] + " …"
		}
		must = append(must, strings.Join(bad, ", ")+": "+detail)
	}
	if len(must) == 0 {
		return nil
	}
	return steps.Failf("%s", strings.Join(must, "; "))
}

// timeline is the per-second evidence chart: acknowledged and failed
// writes, with the failover, the DNS switch and the downtime marked.
func (v *Verify) timeline(env *steps.Env, h *history, d downtime) steps.Evidence {
	n := max(len(h.ackSec), len(h.errSec))
	acks := make([]float64, 0, 2*n)
	errs := make([]float64, 0, 2*n)
	for s := range n {
		a, e := 0, 0
		if s < len(h.ackSec) {
			a = h.ackSec[s]
		}
		if s < len(h.errSec) {
			e = h.errSec[s]
		}
		acks = append(acks, float64(s), float64(a))
		errs = append(errs, float64(s), float64(e))
	}
	var marks []steps.Mark
	if d.endUS > d.startUS {
		marks = append(marks, steps.Mark{X: float64(d.startUS) / 1e6, Label: "last write before the gap"})
		if d.resumed {
			marks = append(marks, steps.Mark{X: float64(d.endUS) / 1e6, Label: fmt.Sprintf("writes resume (+%.0f ms)", d.ms())})
		}
	}
	for _, m := range env.Timeline().Moments() {
		x := float64(m.At.UnixMicro()-h.header.StartUnixUS) / 1e6
		if x >= 0 && x <= float64(h.lastT)/1e6+1 {
			marks = append(marks, steps.Mark{X: x, Label: m.Label})
		}
	}
	sort.Slice(marks, func(i, j int) bool { return marks[i].X < marks[j].X })
	return steps.Evidence{
		Kind:  "series",
		Title: "Writes per second during the drill",
		Series: []steps.Series{
			{Name: "acknowledged", XUnit: "s since flood start", YUnit: "writes/s", Points: acks},
			{Name: "failed or unknown", XUnit: "s since flood start", YUnit: "writes/s", Points: errs},
		},
		Marks: marks,
	}
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }
