package ping

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// remote runs the ping binary (iputils) on a lab host and records what its
// output says about each echo request. It returns the address pinged and
// the raw output for the evidence.
func (p *Ping) remote(ctx context.Context, rec *record) (string, string, error) {
	n := p.probes()
	argv := []string{"ping", "-n", "-D", "-O", "-c", strconv.Itoa(n), "-i", seconds(p.Interval), "-W", seconds(p.Timeout), "-s", strconv.Itoa(p.Size)}
	if p.Source != "" {
		argv = append(argv, "-I", p.Source)
	}
	argv = append(argv, p.Address)
	// ping ends by itself after the last wait; the slack covers exec and
	// scheduling on a busy machine.
	rctx, cancel := context.WithTimeout(ctx, time.Duration(n)*p.Interval+p.Timeout+30*time.Second)
	defer cancel()
	res, err := hostexec.Run(rctx, p.Host, argv, nil)
	out := strings.TrimSpace(res.Stdout + "\n" + res.Stderr)
	if err != nil {
		if ctx.Err() != nil {
			return "", out, ctx.Err()
		}
		return "", out, fmt.Errorf("ping on %s: %w", p.Host, err)
	}
	parsed := parseOutput(res.Stdout+"\n"+res.Stderr, p.Interval)
	for _, pr := range parsed.probes {
		i := rec.add(probe{At: pr.At, Err: pr.Err})
		if pr.OK {
			rec.reply(i, pr.RTT)
		}
	}
	for range parsed.duplicates {
		rec.duplicate()
	}
	if parsed.lastErr != "" {
		rec.fail(parsed.lastErr)
	}
	if res.ExitCode > 1 && len(parsed.probes) == 0 && !routeError(parsed.lastErr) {
		// Not a network verdict: the command itself could not run.
		return parsed.address, out, fmt.Errorf("ping on %s exited %d: %s", p.Host, res.ExitCode, firstLine(out))
	}
	return parsed.address, out, nil
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

var (
	headerLine  = regexp.MustCompile(`^PING \S+ \(([^)]+)\)`)
	replyLine   = regexp.MustCompile(`^(?:\[[\d.]+\] )?\d+ bytes from [^:]+: icmp_seq=(\d+) .*time=([\d.]+) ms(.*)$`)
	icmpErrLine = regexp.MustCompile(`^(?:\[[\d.]+\] )?From \S+ icmp_seq=(\d+) (.+)$`)
	summaryLine = regexp.MustCompile(`^(\d+) packets transmitted, (\d+) received`)
	pingErrLine = regexp.MustCompile(`^(?:\[[\d.]+\] )?ping: (.+)$`)
)

type parsedOutput struct {
	address    string
	probes     []probe
	duplicates int
	lastErr    string
}

// parseOutput reads iputils ping output (-n -D -O): a line per reply, per
// ICMP error and per unanswered request, then the statistics. Echo request
// k is taken to have left at (k-1) intervals. Send errors ("ping: sendmsg:
// ...") carry no sequence number; they are given to the unanswered
// requests in order.
func parseOutput(out string, interval time.Duration) parsedOutput {
	var po parsedOutput
	replies := map[int]time.Duration{}
	icmpErrs := map[int]string{}
	var sendErrs []string
	maxSeq, transmitted := 0, -1
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := headerLine.FindStringSubmatch(line); m != nil {
			po.address = m[1]
			continue
		}
		if m := replyLine.FindStringSubmatch(line); m != nil {
			seq, _ := strconv.Atoi(m[1])
			maxSeq = max(maxSeq, seq)
			if strings.Contains(m[3], "DUP!") {
				po.duplicates++
				continue
			}
			f, _ := strconv.ParseFloat(m[2], 64)
			replies[seq] = time.Duration(f * float64(time.Millisecond))
			continue
		}
		if m := icmpErrLine.FindStringSubmatch(line); m != nil {
			seq, _ := strconv.Atoi(m[1])
			maxSeq = max(maxSeq, seq)
			icmpErrs[seq] = m[2]
			po.lastErr = m[2]
			continue
		}
		if m := summaryLine.FindStringSubmatch(line); m != nil {
			transmitted, _ = strconv.Atoi(m[1])
			continue
		}
		if m := pingErrLine.FindStringSubmatch(line); m != nil {
			sendErrs = append(sendErrs, m[1])
			po.lastErr = m[1]
		}
	}
	n := transmitted
	if n < 0 {
		n = maxSeq
	}
	n = max(n, maxSeq)
	for seq := 1; seq <= n; seq++ {
		pr := probe{Seq: seq, At: time.Duration(seq-1) * interval}
		if rtt, ok := replies[seq]; ok {
			pr.OK, pr.RTT = true, rtt
		} else if e, ok := icmpErrs[seq]; ok {
			pr.Err = e
		} else if len(sendErrs) > 0 && transmitted >= 0 {
			pr.Err, sendErrs = sendErrs[0], sendErrs[1:]
		}
		po.probes = append(po.probes, pr)
	}
	return po
}

// routeError reports whether ping's complaint is a network verdict (no
// route to the address) rather than a failure to run.
func routeError(msg string) bool {
	for _, s := range []string{"unreachable", "No route to host", "Network is down"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
