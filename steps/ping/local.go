package ping

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	probing "github.com/prometheus-community/pro-bing"
	"golang.org/x/sys/unix"
)

// local pings from this machine (or one of its network namespaces) with
// pro-bing and returns the address pinged.
func (p *Ping) local(ctx context.Context, rec *record) (string, error) {
	if p.Netns == "" {
		return p.probe(ctx, rec)
	}
	return inNetns(p.Netns, func() (string, error) { return p.probe(ctx, rec) })
}

// probe runs pro-bing until the run's echo requests are all sent. pro-bing
// ends a run at its first failed send (no route, for instance); ping goes on
// after such an error, and so does this loop, with a fresh pinger one
// interval later, so a keepalive rides out an outage.
func (p *Ping) probe(ctx context.Context, rec *record) (string, error) {
	if err := p.checkSource(); err != nil {
		return "", err
	}
	total := p.probes()
	address := ""
	attempts := func() int { probes, _, _ := rec.snapshot(); return len(probes) }
	for attempts() < total {
		remaining := total - attempts()
		pinger := probing.New(p.Address)
		pinger.SetPrivileged(p.Privileged)
		pinger.SetLogger(probing.NoopLogger{})
		pinger.Count = remaining
		pinger.Interval = p.Interval
		pinger.Timeout = time.Duration(remaining-1)*p.Interval + p.Timeout
		pinger.Size = p.Size
		pinger.Source = p.Source
		pinger.RecordRtts, pinger.RecordTTLs = false, false

		var mu sync.Mutex
		index := map[int]int{} // pro-bing sequence -> record index
		sendFailed := false
		pinger.OnSend = func(pkt *probing.Packet) {
			i := rec.add(probe{At: time.Since(rec.start)})
			mu.Lock()
			index[pkt.Seq] = i
			mu.Unlock()
		}
		pinger.OnRecv = func(pkt *probing.Packet) {
			mu.Lock()
			i, ok := index[pkt.Seq]
			mu.Unlock()
			if ok {
				rec.reply(i, pkt.Rtt)
			}
		}
		pinger.OnDuplicateRecv = func(*probing.Packet) { rec.duplicate() }
		pinger.OnSendError = func(_ *probing.Packet, err error) {
			mu.Lock()
			sendFailed = true
			mu.Unlock()
			rec.add(probe{At: time.Since(rec.start), Err: errText(err)})
			// pro-bing counts only sent requests towards Count and tries a
			// failed one again at the next tick; a failed attempt is one of
			// ours. OnSendError runs on pro-bing's send loop, the only
			// reader of Count.
			if pinger.Count > pinger.PacketsSent {
				pinger.Count--
			}
		}
		err := pinger.RunWithContext(ctx)
		if ip := pinger.IPAddr(); ip != nil {
			address = ip.IP.String()
		}
		mu.Lock()
		failed := sendFailed
		mu.Unlock()
		switch {
		case ctx.Err() != nil:
			return address, ctx.Err()
		case err == nil:
			return address, nil
		case !failed:
			return address, p.explain(err)
		}
		select {
		case <-ctx.Done():
			return address, ctx.Err()
		case <-time.After(p.Interval):
		}
	}
	return address, nil
}

// checkSource refuses a source address this machine (or its namespace)
// does not have: pro-bing would bind to it and every send would fail,
// which would read as an unreachable address.
func (p *Ping) checkSource() error {
	if p.Source == "" {
		return nil
	}
	src := net.ParseIP(p.Source)
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("source: list local addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(src) {
			return nil
		}
	}
	where := "this machine"
	if p.Netns != "" {
		where = "netns " + p.Netns
	}
	return fmt.Errorf("source: %s is not an address of %s", p.Source, where)
}

// explain turns a socket error into what to do about it.
func (p *Ping) explain(err error) error {
	switch {
	case p.Privileged && errors.Is(err, syscall.EPERM):
		return fmt.Errorf("raw ICMP socket refused (%v): privileged: true needs CAP_NET_RAW (root); or use privileged: false", err)
	case !p.Privileged && (errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)):
		rng := "unknown"
		if b, rerr := os.ReadFile("/proc/sys/net/ipv4/ping_group_range"); rerr == nil {
			rng = strings.Join(strings.Fields(string(b)), " ")
		}
		return fmt.Errorf("unprivileged ICMP socket refused (%v): group %d is outside net.ipv4.ping_group_range (%s); use privileged: true (needs CAP_NET_RAW) or widen the range",
			err, os.Getgid(), rng)
	}
	return fmt.Errorf("ping %s: %w", p.Address, err)
}

// inNetns runs fn on an OS thread switched into the named network
// namespace, so the sockets fn opens live there. The thread is never
// unlocked: it ends with its goroutine instead of going back to the
// scheduler inside another namespace.
func inNetns(name string, fn func() (string, error)) (string, error) {
	type result struct {
		addr string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/run/netns", name))
		if err != nil {
			ch <- result{err: fmt.Errorf("netns: %w (create it with: ip netns add %s)", err, name)}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("netns %s: setns: %w (needs CAP_SYS_ADMIN)", name, err)}
			return
		}
		addr, err := fn()
		ch <- result{addr, err}
	}()
	r := <-ch
	return r.addr, r.err
}
