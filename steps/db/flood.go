package db

import (
	"context"
	"crypto/rand"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/opsdrill/opsdrill/steps"
)

// Flood is db.flood: the runbook's writers ("cycles"), each inserting rows
// with its own strictly increasing counter, every attempt recorded in the
// op log.
type Flood struct {
	Conn          `yaml:",inline"`
	Writers       int           `yaml:"writers" doc:"concurrent writers, the runbook's cycles"`
	Table         string        `yaml:"table" doc:"table to write; created with the runbook's schema when absent"`
	CreateTable   bool          `yaml:"create_table" doc:"create the table when it is absent"`
	Duration      time.Duration `yaml:"duration" doc:"stop starting writes after this long"`
	Count         int64         `yaml:"count" doc:"stop each writer after this many writes (0: only the duration bounds it)"`
	Interval      time.Duration `yaml:"interval" doc:"pause between a writer's writes (0: as fast as the server acknowledges; the runbook's test case 1 used 1s)"`
	ConnectPerOp  bool          `yaml:"connect_per_write" doc:"open a new connection for every write, resolving the host each time (the runbook's test case 1)"`
	Pin           bool          `yaml:"pin" doc:"resolve the host once at the start and write only to that address: the primary directly, not the endpoint (the runbook's test case 2)"`
	RunTag        string        `yaml:"run" doc:"tag naming this flood's rows (cycle = RUN-cycleN); default: random"`
	CyclePrefix   string        `yaml:"cycle_prefix" doc:"cycle name prefix"`
	BackoffMin    time.Duration `yaml:"backoff_min" doc:"first pause after a failed write before reconnecting"`
	BackoffMax    time.Duration `yaml:"backoff_max" doc:"the pause doubles after each failure up to this"`
	ProgressEvery time.Duration `yaml:"progress_every" doc:"how often the live status is updated"`
}

var (
	runTag      = regexp.MustCompile(`^[A-Za-z0-9]{1,16}$`)
	cyclePrefix = regexp.MustCompile(`^[A-Za-z0-9_]{0,16}$`)
)

func newFlood() steps.Step {
	return &Flood{
		Conn: defaultConn(), Writers: 5, Table: "failover_test", CreateTable: true, Duration: time.Minute,
		CyclePrefix: "cycle", BackoffMin: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond, ProgressEvery: time.Second,
	}
}

// Validate checks every parameter before anything runs.
func (f *Flood) Validate() error {
	if err := f.Conn.Validate(); err != nil {
		return err
	}
	switch {
	case f.Writers < 1:
		return fmt.Errorf("writers: must be at least 1, got %d", f.Writers)
	case f.Writers > 1024:
		return fmt.Errorf("writers: at most 1024, got %d", f.Writers)
	case f.Duration <= 0:
		return fmt.Errorf("duration: must be positive, got %s (the flood always stops by itself; count can stop it earlier)", f.Duration)
	case f.Count < 0:
		return fmt.Errorf("count: must not be negative, got %d", f.Count)
	case f.Interval < 0:
		return fmt.Errorf("interval: must not be negative, got %s", f.Interval)
	case f.BackoffMin <= 0 || f.BackoffMax < f.BackoffMin:
		return fmt.Errorf("backoff_min, backoff_max: need 0 < backoff_min <= backoff_max, got %s and %s", f.BackoffMin, f.BackoffMax)
	case f.ProgressEvery <= 0:
		return fmt.Errorf("progress_every: must be positive, got %s", f.ProgressEvery)
	case f.RunTag != "" && !runTag.MatchString(f.RunTag):
		return fmt.Errorf("run: %q: use 1 to 16 letters and digits", f.RunTag)
	case !cyclePrefix.MatchString(f.CyclePrefix):
		return fmt.Errorf("cycle_prefix: %q: use at most 16 letters, digits and _", f.CyclePrefix)
	}
	return validTable(f.Table)
}

// writerStats are one writer's counts, updated by the writer and read by
// the progress reporter.
type writerStats struct {
	attempted, acked, failed, unknown, lastAcked atomic.Int64
}

// Run floods the database.
func (f *Flood) Run(ctx context.Context, env *steps.Env) error {
	env.Secret(f.password())
	if err := f.loadCA(env); err != nil {
		return err
	}
	run := f.RunTag
	if run == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		run = "r" + hex.EncodeToString(b)
	}
	cycles := make([]string, f.Writers)
	longest := 0
	for i := range cycles {
		cycles[i] = run + "-" + f.CyclePrefix + strconv.Itoa(i+1)
		longest = max(longest, len(cycles[i]))
	}

	addr, target, err := f.preflight(ctx, env, run, longest)
	if err != nil {
		return err
	}
	abs, rel, err := env.ArtifactPath("oplog.jsonl")
	if err != nil {
		return err
	}
	dbName := ""
	if c, err := mysql.ParseDSN(f.DSN); err == nil {
		dbName = c.DBName
	}
	start := time.Now()
	log, err := createOpLog(abs, opLogHeader{Run: run, Table: f.Table, Database: dbName, Cycles: cycles, Address: target, Pinned: f.Pin}, start)
	if err != nil {
		return err
	}
	cfg, err := f.config(addr)
	if err != nil {
		log.close()
		return err
	}
	cfg.DialFunc = f.recordServers(log, cfg.DialFunc)
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		log.close()
		return fmt.Errorf("dsn: %s", hidePassword(err.Error(), f.DSN))
	}
	env.SetOutput("oplog", abs)
	env.Logf("flooding %s on %s with %d writers for %s (run %s, op log %s)", f.Table, target, f.Writers, f.Duration, run, rel)

	stats := make([]writerStats, f.Writers)
	var stopping atomic.Bool
	stopTimer := time.AfterFunc(f.Duration, func() { stopping.Store(true) })
	defer stopTimer.Stop()
	progressDone := make(chan struct{})
	go f.progress(env, stats, progressDone)

	query := "INSERT INTO `" + f.Table + "` SET cycle = ?, counter = ?, failover_date = NOW()"
	var wg sync.WaitGroup
	for i := range f.Writers {
		w := &floodWriter{f: f, idx: i, cycle: cycles[i], query: query, connector: connector, log: log, stats: &stats[i], stopping: &stopping, env: env}
		wg.Go(func() { w.run(ctx) })
	}
	wg.Wait()
	close(progressDone)
	elapsed := time.Since(start)
	logErr := log.close()

	f.report(env, cycles, stats, elapsed, rel, run, target)
	if logErr != nil {
		return logErr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// recordServers wraps the dialer so that the op log names every server
// address the writers connect to, once: db.verify checks each for split
// brain.
func (f *Flood) recordServers(log *opLogWriter, dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		remote := c.RemoteAddr().String()
		mu.Lock()
		first := !seen[remote] && len(seen) < maxServers
		seen[remote] = true
		mu.Unlock()
		if first {
			log.write(appendServer(nil, log.now(), remote))
		}
		return c, nil
	}
}

// preflight checks, before the first write, everything that would make
// the flood meaningless: the server is reachable with these credentials,
// it is writable, the table has the runbook's shape (or is created), and
// the user may insert and select. It returns the address to write to (the
// pinned one, or "" to follow the DSN's host) and a description of it.
func (f *Flood) preflight(ctx context.Context, env *steps.Env, run string, cycleLen int) (addr, target string, err error) {
	target = f.addr()
	if f.Pin {
		host, port, err := net.SplitHostPort(f.addr())
		if err != nil {
			return "", "", fmt.Errorf("dsn: address %q: %w", f.addr(), err)
		}
		ip, err := f.resolve(ctx, host)
		if err != nil {
			return "", "", f.explain(err)
		}
		addr = net.JoinHostPort(ip, port)
		target = addr + " (pinned from " + host + ")"
	}
	c := f.Conn
	if addr != "" {
		c = f.Conn.at(addr)
	}
	db, err := c.open()
	if err != nil {
		return "", "", err
	}
	defer db.Close()
	pctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout+2*c.ReadTimeout)
	defer cancel()
	id, err := identity(pctx, db)
	if err != nil {
		return "", "", f.explain(err)
	}
	if id.ReadOnly {
		return "", "", fmt.Errorf("dsn: %s (%s, server_id %d) is read-only (%s): a standby or replica; point the flood at the primary or the endpoint",
			f.addr(), id.Hostname, id.ServerID, strings.Join(id.ReadOnlyBy, ", "))
	}
	created, err := ensureTable(pctx, db, f.Table, f.CreateTable, cycleLen)
	if err != nil {
		return "", "", f.explainTable(err)
	}
	if created {
		env.Logf("created table %s with the runbook's schema", f.Table)
	} else if err := freshRun(pctx, db, f.Table, run); err != nil {
		return "", "", f.explainTable(err)
	}
	if err := probeWrite(pctx, db, f.Table, run+"-probe"); err != nil {
		return "", "", f.explainTable(err)
	}
	env.Logf("writer before the flood: %s (server_id %d, %s)", id.Hostname, id.ServerID, id.Version)
	return addr, target, nil
}

func (f *Flood) explainTable(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return f.explain(err)
	}
	return err
}

// pinDSN replaces the DSN's address.
func pinDSN(dsn, addr string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return dsn
	}
	cfg.Addr = addr
	return cfg.FormatDSN()
}

func (f *Flood) progress(env *steps.Env, stats []writerStats, done <-chan struct{}) {
	t := time.NewTicker(f.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			var ok, bad int64
			for i := range stats {
				ok += stats[i].acked.Load()
				bad += stats[i].failed.Load() + stats[i].unknown.Load()
			}
			env.Progress(fmt.Sprintf("%d acknowledged, %d errors", ok, bad))
		}
	}
}

func (f *Flood) report(env *steps.Env, cycles []string, stats []writerStats, elapsed time.Duration, rel, run, target string) {
	writers := map[string]any{}
	var attempted, acked, failed, unknown int64
	rows := make([][]string, 0, len(cycles))
	for i, c := range cycles {
		s := &stats[i]
		a, k, fl, u, last := s.attempted.Load(), s.acked.Load(), s.failed.Load(), s.unknown.Load(), s.lastAcked.Load()
		attempted, acked, failed, unknown = attempted+a, acked+k, failed+fl, unknown+u
		writers[c] = map[string]any{"attempted": a, "acknowledged": k, "last_acked": last, "errors": fl + u, "failed": fl, "unknown": u}
		rows = append(rows, []string{c, strconv.FormatInt(a, 10), strconv.FormatInt(k, 10), strconv.FormatInt(last, 10), strconv.FormatInt(fl, 10), strconv.FormatInt(u, 10)})
	}
	env.SetOutput("writers", writers)
	env.SetOutput("cycles", steps.List(cycles))
	env.SetOutput("run", run)
	env.SetOutput("table", f.Table)
	env.SetOutput("target", target)
	env.SetOutput("attempted", attempted)
	env.SetOutput("acknowledged", acked)
	env.SetOutput("failed", failed)
	env.SetOutput("unknown", unknown)
	env.SetOutput("errors", failed+unknown)
	env.SetOutput("duration_ms", elapsed.Milliseconds())
	rate := 0.0
	if elapsed > 0 {
		rate = float64(acked) / elapsed.Seconds()
	}
	env.SetOutput("writes_per_second", rate)
	env.AddEvidence(steps.TableEvidence("Writers (the runbook's cycles)",
		[]string{"cycle", "attempted", "acknowledged", "last acknowledged counter", "failed", "unknown"}, rows))
	env.AddEvidence(steps.Evidence{Kind: "file", Title: "Op log (invoke/ok/fail/unknown per write)", Path: rel, MediaType: "application/jsonl"})
	env.Logf("flood done: %d writes attempted, %d acknowledged, %d failed, %d unknown in %s (%.0f/s)",
		attempted, acked, failed, unknown, elapsed.Round(time.Millisecond), rate)
}

// floodWriter is one cycle: a connection, a counter, a backoff.
type floodWriter struct {
	f         *Flood
	env       *steps.Env
	idx       int
	cycle     string
	query     string
	connector driver.Connector
	log       *opLogWriter
	stats     *writerStats
	stopping  *atomic.Bool

	conn    driver.Conn
	buf     []byte
	args    [2]driver.NamedValue
	failing bool
}

func (w *floodWriter) run(ctx context.Context) {
	defer w.closeConn()
	backoff := w.f.BackoffMin
	w.args[0] = driver.NamedValue{Ordinal: 1, Value: w.cycle}
	for counter := int64(1); ; counter++ {
		if w.stopping.Load() || ctx.Err() != nil || (w.f.Count > 0 && counter > w.f.Count) {
			return
		}
		w.buf = appendOp(w.buf[:0], w.log.now(), w.idx, opInvoke, counter, 0, "")
		w.log.write(w.buf)
		w.stats.attempted.Add(1)
		id, typ, err := w.insert(ctx, counter)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		w.buf = appendOp(w.buf[:0], w.log.now(), w.idx, typ, counter, id, msg)
		w.log.write(w.buf)
		pause := w.f.Interval
		switch typ {
		case opOK:
			w.stats.acked.Add(1)
			w.stats.lastAcked.Store(counter)
			if w.failing {
				w.env.Logf("%s: writes acknowledged again from counter %d", w.cycle, counter)
			}
			w.failing = false
			backoff = w.f.BackoffMin
		default:
			if typ == opFail {
				w.stats.failed.Add(1)
			} else {
				w.stats.unknown.Add(1)
			}
			if !w.failing {
				w.env.Logf("%s: write %d %s: %s", w.cycle, counter, typ, msg)
			}
			w.failing = true
			w.closeConn()
			pause = max(pause, backoff)
			backoff = min(2*backoff, w.f.BackoffMax)
		}
		if pause > 0 && !sleep(ctx, pause) {
			return
		}
	}
}

// insert performs one write and classifies its outcome.
func (w *floodWriter) insert(ctx context.Context, counter int64) (id int64, typ string, err error) {
	if w.conn == nil {
		cctx, cancel := context.WithTimeout(ctx, w.f.ConnectTimeout)
		c, err := w.connector.Connect(cctx)
		cancel()
		if err != nil {
			// Nothing of this write reached the server.
			return 0, opFail, fmt.Errorf("connect: %w", err)
		}
		w.conn = c
	}
	if w.f.ConnectPerOp {
		defer w.closeConn()
	}
	w.args[1] = driver.NamedValue{Ordinal: 2, Value: counter}
	res, err := w.conn.(driver.ExecerContext).ExecContext(ctx, w.query, w.args[:])
	if err != nil {
		return 0, classify(err), err
	}
	id, _ = res.LastInsertId()
	return id, opOK, nil
}

// afterCommit are the server errors that can arrive after the commit
// happened: the connection or statement was ended from the server side
// (shutdown, KILL), possibly between the commit and its acknowledgement.
var afterCommit = map[uint16]string{
	1053: "ER_SERVER_SHUTDOWN",
	1080: "ER_FORCING_CLOSE",
	1317: "ER_QUERY_INTERRUPTED",
	1927: "ER_CONNECTION_KILLED",
}

// classify tells a write that certainly did not happen (fail) from one
// whose fate the client cannot know (unknown).
func classify(err error) string {
	var me *mysql.MySQLError
	switch {
	case errors.As(err, &me):
		if _, ok := afterCommit[me.Number]; ok {
			return opUnknown
		}
		// Any other error answer: the statement was rolled back.
		return opFail
	case errors.Is(err, driver.ErrBadConn):
		// The driver returns it only when nothing was sent.
		return opFail
	}
	// Sent, and then the connection died, timed out or was cancelled: the
	// commit may or may not have happened.
	return opUnknown
}

func (w *floodWriter) closeConn() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// sleep waits d or until ctx ends; false means ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
