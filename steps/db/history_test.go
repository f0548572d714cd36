package db

import (
	"context"
	"database/sql/driver"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const header = `{"type":"header","version":1,"run":"r1","table":"failover_test","cycles":["r1-cycle1","r1-cycle2"],"start":"2024-05-01T10:00:00Z","start_unix_us":1714557600000000}` + "\n"

func historyOf(t *testing.T, body string) *history {
	t.Helper()
	h, err := loadHistory(strings.NewReader(header + body))
	require.NoError(t, err)
	return h
}

// TestJudge: every outcome against every database state, one write each.
func TestJudge(t *testing.T) {
	h := historyOf(t, `{"t":1,"p":0,"type":"invoke","v":1}
{"t":2,"p":0,"type":"ok","v":1,"id":10}
{"t":3,"p":0,"type":"invoke","v":2}
{"t":4,"p":0,"type":"ok","v":2,"id":11}
{"t":5,"p":0,"type":"invoke","v":3}
{"t":6,"p":0,"type":"unknown","v":3,"err":"read tcp: i/o timeout"}
{"t":7,"p":0,"type":"invoke","v":4}
{"t":8,"p":0,"type":"unknown","v":4,"err":"invalid connection"}
{"t":9,"p":0,"type":"invoke","v":5}
{"t":10,"p":0,"type":"fail","v":5,"err":"Error 1290 (HY000): read-only"}
{"t":11,"p":0,"type":"invoke","v":6}
{"t":12,"p":0,"type":"fail","v":6,"err":"connect: connection refused"}
{"t":13,"p":1,"type":"invoke","v":1}
{"t":14,"p":1,"type":"ok","v":1,"id":12}
{"t":15,"p":1,"type":"invoke","v":2}
{"type":"end","t":20}
`)
	assert.True(t, h.ended)
	// In the database: write 1 (and a second row with its counter), not 2 (lost), 3 (recovered), not 4,
	// not 5, 6 (refused yet present), writer 2's 1 and its 2 (invoked,
	// never completed: recovered), a counter never attempted, a stranger.
	for _, r := range []struct {
		id    int64
		cycle string
		v     int64
	}{{10, "r1-cycle1", 1}, {20, "r1-cycle1", 1}, {21, "r1-cycle1", 3}, {22, "r1-cycle1", 6}, {12, "r1-cycle2", 1}, {23, "r1-cycle2", 2}, {24, "r1-cycle2", 99}, {25, "r1-cycle7", 1}} {
		h.observe(r.id, r.cycle, r.v)
	}
	h.judge()
	w1, w2 := h.writers[0], h.writers[1]
	assert.Equal(t, int64(1), w1.lost)
	assert.Equal(t, []int64{2}, w1.lostSamples)
	assert.Equal(t, int64(1), w1.recovered)
	assert.Equal(t, int64(1), w1.unknownAbsent)
	assert.Equal(t, int64(1), w1.failedPresent)
	assert.Equal(t, int64(1), w1.dups)
	assert.Equal(t, int64(2), w1.maxAcked)
	assert.Equal(t, int64(6), w1.maxInDB)
	assert.Equal(t, int64(1), w2.recovered, "invoked without an outcome counts as unknown")
	assert.Equal(t, int64(1), w2.unexpected)
	assert.Equal(t, int64(99), w2.maxInDB)
	tot := h.totals()
	assert.Equal(t, totals{attempted: 8, acked: 3, failed: 2, unknown: 2, lost: 1, recovered: 2, unexpected: 2, dups: 1, failedPresent: 1, unknownAbsent: 1}, tot)
	text := h.lostText()
	assert.Contains(t, text, "r1-cycle1: lost 1 (counters 2)")
	assert.Contains(t, text, "r1-cycle2: lost 0; unexpected 1 (counters 99)")
	assert.Contains(t, text, "rows of this run written by no writer: 1 (r1-cycle7/1)")
}

func TestDowntime(t *testing.T) {
	cases := []struct {
		name string
		body string
		want downtime
	}{
		{"longest gap between acknowledgements, across writers", `{"t":0,"p":0,"type":"invoke","v":1}
{"t":1000,"p":0,"type":"ok","v":1,"id":1}
{"t":1500,"p":1,"type":"invoke","v":1}
{"t":2000,"p":1,"type":"ok","v":1,"id":2}
{"t":2000,"p":0,"type":"invoke","v":2}
{"t":9000,"p":0,"type":"fail","v":2,"err":"x"}
{"t":9000,"p":0,"type":"invoke","v":3}
{"t":12500,"p":0,"type":"ok","v":3,"id":3}
{"t":12600,"p":1,"type":"invoke","v":2}
{"t":13000,"p":1,"type":"ok","v":2,"id":4}
`, downtime{startUS: 2000, endUS: 12500, resumed: true}},
		{"writes never came back", `{"t":0,"p":0,"type":"invoke","v":1}
{"t":1000,"p":0,"type":"ok","v":1,"id":1}
{"t":1000,"p":0,"type":"invoke","v":2}
{"t":50000,"p":0,"type":"fail","v":2,"err":"x"}
`, downtime{startUS: 1000, endUS: 50000, resumed: false}},
		{"down from the start", `{"t":0,"p":0,"type":"invoke","v":1}
{"t":8000,"p":0,"type":"fail","v":1,"err":"x"}
{"t":8000,"p":0,"type":"invoke","v":2}
{"t":9000,"p":0,"type":"ok","v":2,"id":1}
{"t":9000,"p":0,"type":"invoke","v":3}
{"t":9500,"p":0,"type":"ok","v":3,"id":2}
`, downtime{startUS: 0, endUS: 9000, resumed: true}},
		{"nothing acknowledged", `{"t":0,"p":0,"type":"invoke","v":1}
{"t":3000,"p":0,"type":"fail","v":1,"err":"x"}
`, downtime{startUS: 0, endUS: 3000}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, historyOf(t, tc.body).downtime(math.MinInt64))
		})
	}
	assert.InDelta(t, 10.5, downtime{startUS: 2000, endUS: 12500}.ms(), 1e-9)
}

func TestOpLogReader(t *testing.T) {
	cases := []struct {
		name  string
		log   string
		err   string
		ended bool
		ops   int
	}{
		{"complete", header + `{"t":1,"p":0,"type":"invoke","v":1}` + "\n" + `{"type":"end","t":2}` + "\n", "", true, 1},
		{"cut short by a crash, last line half written", header + `{"t":1,"p":0,"type":"invoke","v":1}` + "\n" + `{"t":2,"p":0,"ty`, "", false, 1},
		{"foreign formatting still read", header + `{ "v": 1, "type": "invoke", "p": 1, "t": 5 }` + "\n", "", false, 1},
		{"damaged in the middle", header + `{"t":1,"p":0,"ty` + "\n" + `{"t":2,"p":0,"type":"invoke","v":1}` + "\n", "op log line 2", false, 0},
		{"writer out of range", header + `{"t":1,"p":5,"type":"invoke","v":1}` + "\n", "writer 5 out of range", false, 0},
		{"empty", "", "op log is empty", false, 0},
		{"not an op log", `{"hello":1}` + "\n", "not an op log", false, 0},
		{"newer version", strings.Replace(header, `"version":1`, `"version":2`, 1), "op log version 2", false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := newOpLogReader(strings.NewReader(tc.log))
			n := 0
			if err == nil {
				var rec opRecord
				for {
					var ok bool
					ok, err = rd.next(&rec)
					if !ok || err != nil {
						break
					}
					n++
				}
			}
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.ended, rd.Ended)
			assert.Equal(t, tc.ops, n)
		})
	}
}

// TestOpLogRoundTrip: what the writer writes, the fast parser reads back
// exactly, error texts (JSON-escaped) included.
func TestOpLogRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oplog.jsonl")
	l, err := createOpLog(path, opLogHeader{Run: "r1", Table: "t", Cycles: []string{"r1-cycle1"}}, time.Now())
	require.NoError(t, err)
	want := []opRecord{
		{Type: opInvoke, T: 5, P: 0, V: 1},
		{Type: opOK, T: 9, P: 0, V: 1, ID: 4242},
		{Type: opInvoke, T: 10, P: 0, V: 2},
		{Type: opUnknown, T: 2000010, P: 0, V: 2, Err: "read tcp 10.0.0.1:5->10.0.0.2:3306: i/o timeout \"quoted\"\n"},
	}
	for _, r := range want {
		l.write(appendOp(nil, r.T, r.P, r.Type, r.V, r.ID, r.Err))
	}
	require.NoError(t, l.close())
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	rd, err := newOpLogReader(f)
	require.NoError(t, err)
	var got []opRecord
	var rec opRecord
	for {
		ok, err := rd.next(&rec)
		require.NoError(t, err)
		if !ok {
			break
		}
		got = append(got, rec)
	}
	assert.Equal(t, want, got)
	assert.True(t, rd.Ended)
	assert.Equal(t, "r1", rd.Header.Run)
	assert.NotZero(t, rd.Header.StartUnixUS)
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{&mysql.MySQLError{Number: 1290, Message: "The MariaDB server is running with the --read-only option"}, opFail},
		{&mysql.MySQLError{Number: 1062, Message: "Duplicate entry"}, opFail},
		// Errors that can arrive after the commit happened.
		{&mysql.MySQLError{Number: 1053, Message: "Server shutdown in progress"}, opUnknown},
		{&mysql.MySQLError{Number: 1927, Message: "Connection was killed"}, opUnknown},
		{fmt.Errorf("exec: %w", &mysql.MySQLError{Number: 1317, Message: "Query execution was interrupted"}), opUnknown},
		{fmt.Errorf("exec: %w", driver.ErrBadConn), opFail},
		{mysql.ErrInvalidConn, opUnknown},
		{os.ErrDeadlineExceeded, opUnknown},
		{context.Canceled, opUnknown},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, classify(tc.err), "%v", tc.err)
	}
}

// TestLeftoverRowsCannotStandIn: rows are matched by the id the server
// acknowledged, so a leftover row with a lost write's cycle and counter
// (an earlier run with the same tag) leaves the write lost and is
// unexpected; next to the write's own row it is a duplicate.
func TestLeftoverRowsCannotStandIn(t *testing.T) {
	body := `{"t":1,"p":0,"type":"invoke","v":1}
{"t":2,"p":0,"type":"ok","v":1,"id":100}
{"t":3,"p":0,"type":"invoke","v":2}
{"t":4,"p":0,"type":"ok","v":2,"id":101}
`
	cases := []struct {
		name                   string
		rows                   [][2]int64 // id, counter of cycle1
		lost, unexpected, dups int64
	}{
		{"both writes with their ids", [][2]int64{{100, 1}, {101, 2}}, 0, 0, 0},
		{"write 2 lost, a leftover row with its counter stands in", [][2]int64{{100, 1}, {7, 2}}, 1, 1, 0},
		{"write 2 there and a second row with its counter", [][2]int64{{100, 1}, {101, 2}, {7, 2}}, 0, 0, 1},
		{"write 2 lost outright", [][2]int64{{100, 1}}, 1, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := historyOf(t, body)
			for _, r := range tc.rows {
				h.observe(r[0], "r1-cycle1", r[1])
			}
			h.judge()
			tot := h.totals()
			assert.Equal(t, tc.lost, tot.lost, "lost")
			assert.Equal(t, tc.unexpected, tot.unexpected, "unexpected")
			assert.Equal(t, tc.dups, tot.dups, "duplicates")
		})
	}
}

// TestOpLogAbsurdCounter: a damaged line with a huge counter is a clear
// error naming the line, not a gigabyte allocation.
func TestOpLogAbsurdCounter(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"a jump to 10^15", `{"t":1,"p":0,"type":"invoke","v":1}
{"t":2,"p":0,"type":"invoke","v":1000000000000000}
`, "op log line 3: counter 1000000000000000 of writer 0 jumps past 1"},
		{"the first counter far out", `{"t":1,"p":1,"type":"invoke","v":999999999}
`, "op log line 2: counter 999999999 of writer 1 jumps past 0"},
		{"an id beyond the column", `{"t":1,"p":0,"type":"invoke","v":1}
{"t":2,"p":0,"type":"ok","v":1,"id":99999999999}
`, "row id 99999999999"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := loadHistory(strings.NewReader(header + tc.body))
			runtime.ReadMemStats(&after)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "reading a damaged log stays small")
		})
	}
}

// TestDowntimeAfterFailover: the downtime is the gap that ends after the
// failover, and writes resumed only if acknowledged writes follow it.
func TestDowntimeAfterFailover(t *testing.T) {
	// A 5 s hiccup early on, acknowledgements until 10 s, the failover at
	// 12 s: the writes never came back after it.
	body := `{"t":0,"p":0,"type":"invoke","v":1}
{"t":1000000,"p":0,"type":"ok","v":1,"id":1}
{"t":1000000,"p":0,"type":"invoke","v":2}
{"t":6000000,"p":0,"type":"ok","v":2,"id":2}
{"t":6000000,"p":0,"type":"invoke","v":3}
{"t":10000000,"p":0,"type":"ok","v":3,"id":3}
{"t":10000000,"p":0,"type":"invoke","v":4}
{"t":13000000,"p":0,"type":"fail","v":4,"err":"x"}
`
	h := historyOf(t, body)
	assert.Equal(t, downtime{startUS: 1000000, endUS: 6000000, resumed: true}, h.downtime(math.MinInt64), "without a failover: the longest gap")
	assert.Equal(t, downtime{startUS: 10000000, endUS: 13000000, resumed: false}, h.downtime(12000000), "after the failover at 12 s nothing was acknowledged")
	assert.Equal(t, downtime{startUS: 1000000, endUS: 6000000, resumed: true}, h.downtime(2000000), "a failover at 2 s: the gap it caused, writes back at 6 s")
}
