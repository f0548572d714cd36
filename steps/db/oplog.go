package db

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// The op log is the flood's history, written as it happens and judged
// afterwards (Jepsen's discipline: record first, decide later). It is JSON
// lines:
//
//	{"type":"header","version":1,"run":"r5f3a","table":"failover_test","cycles":["r5f3a-cycle1",...],"start":"RFC3339","start_unix_us":...}
//	{"t":1503,"p":0,"type":"invoke","v":1}
//	{"t":2710,"p":0,"type":"ok","v":1,"id":88}
//	{"t":9120,"p":3,"type":"fail","v":17,"err":"connect to ...: connection refused"}
//	{"t":9300,"p":1,"type":"unknown","v":15,"err":"read tcp ...: i/o timeout"}
//	{"t":9800,"type":"server","addr":"10.213.5.11:3306"}
//	{"type":"end","t":60000123}
//
// t is microseconds since the flood started on the monotonic clock (wall
// clock steps cannot reorder it); p is the writer (its cycle is
// cycles[p]); v is the writer's counter, strictly increasing; id is the
// row's AUTO_INCREMENT id. ok means the server acknowledged the commit;
// fail means it certainly did not happen (refused connection, error
// packet); unknown means the outcome cannot be known from the client (the
// connection died or timed out after the statement was sent). A log
// without its end line was cut short: writes invoked but never completed
// in it count as unknown. A server line names an address the writers
// connected to for the first time: db.verify checks every server the
// flood wrote to for split brain.
const opLogVersion = 1

// Op types.
const (
	opInvoke  = "invoke"
	opOK      = "ok"
	opFail    = "fail"
	opUnknown = "unknown"
	opServer  = "server"
)

// opLogHeader is the first line of an op log.
type opLogHeader struct {
	Type        string   `json:"type"`
	Version     int      `json:"version"`
	Run         string   `json:"run"`
	Table       string   `json:"table"`
	Database    string   `json:"database"`
	Cycles      []string `json:"cycles"`
	Start       string   `json:"start"`
	StartUnixUS int64    `json:"start_unix_us"`
	Address     string   `json:"address"`
	Pinned      bool     `json:"pinned,omitempty"`
}

// opLogWriter appends records to the op log file. Writers format their
// line in their own buffer and append it under a short lock; a background
// flush every 100 ms bounds what a crash can lose, and memory stays
// constant however long the flood runs.
type opLogWriter struct {
	start time.Time

	mu     sync.Mutex
	f      *os.File
	w      *bufio.Writer
	err    error
	closed bool

	stop chan struct{}
	done chan struct{}
}

func createOpLog(path string, h opLogHeader, start time.Time) (*opLogWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("op log: %w", err)
	}
	h.Type, h.Version = "header", opLogVersion
	h.Start = start.UTC().Format(time.RFC3339Nano)
	h.StartUnixUS = start.UnixMicro()
	line, err := json.Marshal(h)
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &opLogWriter{start: start, f: f, w: bufio.NewWriterSize(f, 1<<20), stop: make(chan struct{}), done: make(chan struct{})}
	l.w.Write(line)
	l.w.WriteByte('\n')
	go l.flusher()
	return l, nil
}

// now returns the op log clock: microseconds since the flood started,
// monotonic.
func (l *opLogWriter) now() int64 { return time.Since(l.start).Microseconds() }

func (l *opLogWriter) flusher() {
	defer close(l.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			if l.err == nil && !l.closed {
				l.err = l.w.Flush()
			}
			l.mu.Unlock()
		}
	}
}

// appendOp formats one op line into buf.
func appendOp(buf []byte, t int64, p int, typ string, v, id int64, msg string) []byte {
	buf = append(buf, `{"t":`...)
	buf = strconv.AppendInt(buf, t, 10)
	buf = append(buf, `,"p":`...)
	buf = strconv.AppendInt(buf, int64(p), 10)
	buf = append(buf, `,"type":"`...)
	buf = append(buf, typ...)
	buf = append(buf, `","v":`...)
	buf = strconv.AppendInt(buf, v, 10)
	if typ == opOK {
		buf = append(buf, `,"id":`...)
		buf = strconv.AppendInt(buf, id, 10)
	}
	if msg != "" {
		buf = append(buf, `,"err":`...)
		q, _ := json.Marshal(msg)
		buf = append(buf, q...)
	}
	return append(buf, "}\n"...)
}

// appendServer formats a server line.
func appendServer(buf []byte, t int64, addr string) []byte {
	buf = append(buf, `{"t":`...)
	buf = strconv.AppendInt(buf, t, 10)
	buf = append(buf, `,"type":"server","addr":`...)
	q, _ := json.Marshal(addr)
	buf = append(buf, q...)
	return append(buf, "}\n"...)
}

// write appends formatted lines.
func (l *opLogWriter) write(line []byte) {
	l.mu.Lock()
	if l.err == nil && !l.closed {
		_, l.err = l.w.Write(line)
	}
	l.mu.Unlock()
}

// close writes the end line, flushes, syncs and closes the file. The
// error is the first write error, if any.
func (l *opLogWriter) close() error {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.err
	}
	l.closed = true
	if l.err == nil {
		_, l.err = fmt.Fprintf(l.w, "{\"type\":\"end\",\"t\":%d}\n", l.now())
	}
	if l.err == nil {
		l.err = l.w.Flush()
	}
	if l.err == nil {
		l.err = l.f.Sync()
	}
	if err := l.f.Close(); l.err == nil {
		l.err = err
	}
	if l.err != nil {
		return fmt.Errorf("op log: %w", l.err)
	}
	return nil
}

// opRecord is one line of the op log after the header.
type opRecord struct {
	Type string `json:"type"`
	T    int64  `json:"t"`
	P    int    `json:"p"`
	V    int64  `json:"v"`
	ID   int64  `json:"id"`
	Err  string `json:"err"`
	Addr string `json:"addr"`
}

// opLogReader streams an op log record by record; nothing is kept.
type opLogReader struct {
	Header opLogHeader
	Ended  bool // the end line was read: the flood finished its log

	br   *bufio.Reader
	line int
}

// newOpLogReader reads and checks the header.
func newOpLogReader(r io.Reader) (*opLogReader, error) {
	rd := &opLogReader{br: bufio.NewReaderSize(r, 1<<16), line: 1}
	line, err := readLine(rd.br)
	if errors.Is(err, io.EOF) {
		return nil, errors.New("op log is empty")
	}
	if err != nil {
		return nil, err
	}
	h := &rd.Header
	if err := json.Unmarshal(line, h); err != nil || h.Type != "header" {
		return nil, errors.New("not an op log: the first line is not its header")
	}
	if h.Version != opLogVersion {
		return nil, fmt.Errorf("op log version %d; this opsdrill reads version %d", h.Version, opLogVersion)
	}
	if len(h.Cycles) == 0 {
		return nil, errors.New("op log header names no writers")
	}
	return rd, nil
}

// next reads the next op into rec; false at the end of the log.
func (rd *opLogReader) next(rec *opRecord) (bool, error) {
	for {
		line, err := readLine(rd.br)
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		rd.line++
		if !parseOp(line, rec) {
			*rec = opRecord{}
			if err := json.Unmarshal(line, rec); err != nil {
				// A crash can cut the last line short; anything else is damage.
				if _, perr := rd.br.Peek(1); errors.Is(perr, io.EOF) {
					return false, nil
				}
				return false, fmt.Errorf("op log line %d: %w", rd.line, err)
			}
		}
		if rec.Type == "end" {
			rd.Ended = true
			continue
		}
		if rec.Type == opServer {
			return true, nil
		}
		if rec.P < 0 || rec.P >= len(rd.Header.Cycles) {
			return false, fmt.Errorf("op log line %d: writer %d out of range", rd.line, rec.P)
		}
		return true, nil
	}
}

// readLine returns the next line without its newline; a final line
// without one is returned as is.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// An op line never gets this long; only a damaged log does.
		return nil, errors.New("op log line longer than 64 KiB")
	}
	if len(line) > 0 && err == io.EOF {
		return line, nil
	}
	if err != nil {
		return nil, err
	}
	return line[:len(line)-1], nil
}

// parseOp decodes the lines appendOp writes without reflection; it
// returns false for anything else (error text, foreign formatting), which
// the caller then decodes with encoding/json.
func parseOp(b []byte, rec *opRecord) bool {
	*rec = opRecord{}
	var ok bool
	if b, ok = expect(b, `{"t":`); !ok {
		return false
	}
	if rec.T, b, ok = number(b); !ok {
		return false
	}
	if b, ok = expect(b, `,"p":`); !ok {
		return false
	}
	var p int64
	if p, b, ok = number(b); !ok {
		return false
	}
	rec.P = int(p)
	if b, ok = expect(b, `,"type":"`); !ok {
		return false
	}
	i := 0
	for i < len(b) && b[i] != '"' {
		i++
	}
	switch string(b[:i]) {
	case opInvoke:
		rec.Type = opInvoke
	case opOK:
		rec.Type = opOK
	case opFail:
		rec.Type = opFail
	case opUnknown:
		rec.Type = opUnknown
	default:
		return false
	}
	if b, ok = expect(b[i:], `","v":`); !ok {
		return false
	}
	if rec.V, b, ok = number(b); !ok {
		return false
	}
	if rec.Type == opOK {
		if b, ok = expect(b, `,"id":`); !ok {
			return false
		}
		if rec.ID, b, ok = number(b); !ok {
			return false
		}
	}
	return string(b) == "}"
}

func expect(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

func number(b []byte) (int64, []byte, bool) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		i, neg = 1, true
	}
	start := i
	var n int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	// 18 digits cannot overflow an int64.
	if i == start || i-start > 18 {
		return 0, b, false
	}
	if neg {
		n = -n
	}
	return n, b[i:], true
}
