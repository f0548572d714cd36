package ping

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

const ms1 = time.Millisecond

func TestSummarize(t *testing.T) {
	p := func(at int, ok bool, rtt int, err string) probe {
		return probe{At: time.Duration(at) * ms1, OK: ok, RTT: time.Duration(rtt) * ms1, Err: err}
	}
	tests := []struct {
		name   string
		probes []probe
		want   stats
	}{
		{
			name:   "nothing sent",
			probes: nil,
			want:   stats{LossPct: 100, FirstReply: -1},
		},
		{
			name:   "all answered",
			probes: []probe{p(0, true, 2, ""), p(100, true, 4, ""), p(200, true, 6, "")},
			want: stats{Sent: 3, Received: 3, Min: 2 * ms1, Avg: 4 * ms1, Max: 6 * ms1,
				StdDev: time.Duration(1632993), FirstReply: 2 * ms1},
		},
		{
			name: "an outage in the middle and one at the end",
			probes: []probe{p(0, true, 1, ""), p(100, false, 0, ""), p(200, false, 0, "No route to host"),
				p(300, true, 1, ""), p(400, false, 0, "")},
			want: stats{Sent: 5, Received: 2, Lost: 3, LossPct: 60, Errors: 1, Min: ms1, Avg: ms1, Max: ms1,
				FirstReply: ms1, Outages: 2, LongestOutage: 200 * ms1},
		},
		{
			name:   "nothing answered",
			probes: []probe{p(0, false, 0, ""), p(100, false, 0, "")},
			want:   stats{Sent: 2, Lost: 2, LossPct: 100, FirstReply: -1, Outages: 1, LongestOutage: 200 * ms1},
		},
		{
			name:   "one third lost",
			probes: []probe{p(0, true, 1, ""), p(100, false, 0, ""), p(200, true, 1, "")},
			want: stats{Sent: 3, Received: 2, Lost: 1, LossPct: 33.33, Min: ms1, Avg: ms1, Max: ms1,
				FirstReply: ms1, Outages: 1, LongestOutage: 100 * ms1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, summarize(tt.probes, 0, "", 100*ms1))
		})
	}
}

func TestPublish(t *testing.T) {
	env := steps.NewEnv("s", "p", t.TempDir(), steps.Hooks{})
	probes := []probe{
		{Seq: 1, At: 0, OK: true, RTT: 1500 * time.Microsecond},
		{Seq: 2, At: 200 * ms1, Err: "No route to host"},
		{Seq: 3, At: 400 * ms1, OK: true, RTT: 2500 * time.Microsecond},
	}
	s := summarize(probes, 1, "No route to host", 200*ms1)
	publish(env, "192.0.2.1", "lab:cgw", probes, s)
	out := env.Outputs()
	assert.Equal(t, map[string]any{
		"address": "192.0.2.1", "sent": 3, "received": 2, "lost": 1, "loss_pct": 33.33, "duplicates": 1, "errors": 1,
		"rtt_min_ms": 1.5, "rtt_avg_ms": 2.0, "rtt_max_ms": 2.5, "rtt_stddev_ms": 0.5, "first_reply_ms": 1.5,
		"longest_outage_ms": 200.0, "outages": 1, "error": "No route to host",
	}, out)
	ev := env.Evidence()
	require.Len(t, ev, 2)
	assert.Equal(t, "series", ev[0].Kind)
	assert.Equal(t, []float64{0, 1.5, 0.4, 2.5}, ev[0].Series[0].Points)
	assert.Equal(t, []float64{0.2, 0}, ev[0].Series[1].Points)
	assert.Equal(t, []steps.Mark{{X: 0.2, Label: "loss from seq 2: No route to host"}}, ev[0].Marks)
	assert.Equal(t, [][]string{{"3", "2", "33.33", "1.500/2.000/2.500/0.500", "200", "1"}}, ev[1].Table.Rows)
}

// The testdata files are iputils ping output (Debian bookworm) captured in
// the lab with -n -D -O.
func TestParseOutput(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("testdata/" + name)
		require.NoError(t, err)
		return string(b)
	}
	type pr struct {
		ok  bool
		err string
	}
	tests := []struct {
		file    string
		address string
		want    []pr
		lastErr string
	}{
		{"ok.txt", "10.213.108.11", []pr{{ok: true}, {ok: true}, {ok: true}, {ok: true}}, ""},
		{"half-lost.txt", "10.213.108.11", []pr{{ok: true}, {}, {ok: true}, {}, {ok: true}, {}}, ""},
		{"host-unreachable.txt", "10.213.108.99", []pr{
			{err: "Destination Host Unreachable"}, {err: "Destination Host Unreachable"}, {err: "Destination Host Unreachable"}, {}, {},
		}, "Destination Host Unreachable"},
		{"route-vanishes.txt", "10.213.108.11", []pr{{ok: true}, {ok: true}, {ok: true}, {}, {}, {ok: true}, {ok: true}, {ok: true}}, ""},
		{"no-route.txt", "", nil, "connect: No route to host"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			po := parseOutput(read(tt.file), 200*ms1)
			assert.Equal(t, tt.address, po.address)
			assert.Equal(t, tt.lastErr, po.lastErr)
			require.Len(t, po.probes, len(tt.want))
			for i, w := range tt.want {
				got := po.probes[i]
				assert.Equal(t, i+1, got.Seq)
				assert.Equal(t, time.Duration(i)*200*ms1, got.At)
				assert.Equal(t, w.ok, got.OK, "seq %d", i+1)
				assert.Equal(t, w.err, got.Err, "seq %d", i+1)
				if w.ok {
					assert.Greater(t, got.RTT, time.Duration(0))
				}
			}
		})
	}

	po := parseOutput("PING x (192.0.2.1) 56(84) bytes of data.\n"+
		"64 bytes from 192.0.2.1: icmp_seq=1 ttl=64 time=12 ms\n"+
		"64 bytes from 192.0.2.1: icmp_seq=1 ttl=64 time=13 ms (DUP!)\n"+
		"ping: sendmsg: Network is unreachable\n"+
		"\n--- x ping statistics ---\n2 packets transmitted, 1 received, +1 duplicates, 50% packet loss, time 1001ms\n", time.Second)
	assert.Equal(t, 1, po.duplicates)
	require.Len(t, po.probes, 2)
	assert.Equal(t, 12*ms1, po.probes[0].RTT)
	assert.Equal(t, "sendmsg: Network is unreachable", po.probes[1].Err, "a send error goes to an unanswered request")
	assert.True(t, routeError(po.lastErr))
	assert.False(t, routeError("socket: Operation not permitted"))
}
