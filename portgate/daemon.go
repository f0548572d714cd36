// Package portgate is the OTP-authenticated on-demand port opener: what the
// seed runbook "How To Securely Open Ports On-Demand For Dynamic IPs Through
// iptables" builds with a PHP page and sudo iptables, with the OTP version
// it promises, leases that end, and an audit trail.
//
// A Daemon ties the parts together: auth (TOTP, replay, lockout), lease
// (table and state file), firewall (nftables or iptables backend), audit
// (JSON lines) and api (HTTP). cmd/portgate runs it:
//
//	cfg, _ := portgate.LoadConfig("/etc/portgate/config.yaml")
//	d, _ := portgate.New(cfg, portgate.Options{})
//	_ = d.Start()             // firewall set-up and reconciliation
//	go d.Run(ctx)             // ends leases on time
//	http.Serve(l, api.NewHandler(d, api.Options{}))
//	_ = d.Shutdown()          // on SIGTERM: keep or close leases
//
// Order of effects when opening: authenticate, install the rule, persist
// the lease, answer. A crash after the rule but before the state file was
// written leaves a rule with no lease: the next start removes it (fail
// closed). Rules portgate installs end by themselves in the kernel (nft
// element timeouts, xt_time), so a lease ends on time even while portgate
// is down; while it runs, it deletes them itself at the lease end and
// reconciles the firewall every ReconcileInterval.
package portgate

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/opsdrill/opsdrill/portgate/api"
	"github.com/opsdrill/opsdrill/portgate/audit"
	"github.com/opsdrill/opsdrill/portgate/auth"
	"github.com/opsdrill/opsdrill/portgate/firewall"
	"github.com/opsdrill/opsdrill/portgate/lease"
)

// Options are the parts a caller may supply; zero values build them from
// the configuration.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Firewall overrides the configured backend.
	Firewall firewall.Backend
	// Audit receives audit events (default: the configured file).
	Audit *audit.Log
	// Log receives operational messages (default: discarded).
	Log *slog.Logger
	// FixedPassword is the --allow-fixed-password flag: without it a
	// fixed_password section is refused.
	FixedPassword bool
	// Store overrides the state file (tests inject failing disks).
	Store Store
}

// Store persists leases and replay floors; *lease.File is the real one.
type Store interface {
	Load() (lease.State, error)
	Save(lease.State) error
	Append(lease.Change) (int, error)
	Close() error
}

// Daemon is a running portgate.
type Daemon struct {
	cfg   *Config
	auth  *auth.Authenticator
	fw    firewall.Backend
	file  Store
	audit *audit.Log
	log   *slog.Logger
	now   func() time.Time

	mu    sync.Mutex
	table *lease.Table
	wake  chan struct{}
	// dirty: a change could not be journalled; a snapshot is owed.
	// resync: rules whose firewall change failed, retried by Run.
	dirty  bool
	resync map[lease.Key]bool
	// compact: the journal is long; Run writes a snapshot.
	compact bool
	// throttleSaved is the throttle change count last saved.
	throttleSaved uint64
}

// ErrFixedPasswordRefused is returned by New when the configuration has a
// fixed_password section but the flag allowing it was not given.
var ErrFixedPasswordRefused = errors.New("fixed_password: the seed's fixed-password mode is refused unless portgate runs with --allow-fixed-password (a shared password can be guessed, shared and replayed; use TOTP users)")

// New builds a daemon. Nothing is changed on the system until Start.
func New(cfg *Config, o Options) (*Daemon, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	clock := o.Now
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.FixedPassword != nil && !o.FixedPassword {
		return nil, ErrFixedPasswordRefused
	}
	if o.Store == nil {
		o.Store = &lease.File{Path: cfg.StateFile}
	}
	d := &Daemon{
		cfg:   cfg,
		auth:  auth.New(cfg.users, cfg.Policy(), o.Now),
		fw:    o.Firewall,
		file:  o.Store,
		audit: o.Audit,
		log:   o.Log,
		// Lease ends are wall-clock times (clients are told them): a
		// wall clock stepped forward past an end ends the lease, which
		// the monotonic reading time.Now carries would hide.
		now:    func() time.Time { return clock().Round(0) },
		table:  lease.NewTable(),
		wake:   make(chan struct{}, 1),
		resync: map[lease.Key]bool{},
	}
	if fp := cfg.FixedPassword; fp != nil {
		d.auth.SetPasswordHash(fp.hash, fixedUser)
	}
	if d.fw == nil {
		fw, err := firewall.New(cfg.Firewall, o.Now)
		if err != nil {
			return nil, err
		}
		d.fw = fw
	}
	return d, nil
}

// fixedUser is the name the fixed-password mode acts under in the audit log.
const fixedUser = "(fixed-password)"

// Auth returns the authenticator (tests and benchmarks read its state).
func (d *Daemon) Auth() *auth.Authenticator { return d.auth }

// Start sets up the firewall and reconciles it with the state file:
// expired leases are dropped, rules without a live lease are removed, live
// leases whose rule is missing or wrong are reinstalled. Only portgate's
// own table or chain is read or changed.
func (d *Daemon) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.file.Load()
	if err != nil {
		return err
	}
	d.auth.Restore(st.Floors)
	if err := d.loadThrottle(); err != nil {
		return err
	}
	now := d.now()
	d.audit.Write(audit.Event{Event: audit.Start, Detail: fmt.Sprintf("backend %s, ports %v, %d users", d.fw.Name(), d.cfg.Ports, len(d.cfg.users)), Count: len(st.Leases)})
	for _, l := range st.Leases {
		ev := audit.Event{Event: audit.Close, User: l.User, Source: l.Source, IP: l.IP, Port: l.Port, Lease: l.ID, Expires: l.Expires}
		switch {
		case !l.Live(now):
			ev.Event, ev.Reason = audit.Expire, "ended while portgate was down"
			d.audit.Write(ev)
			continue
		case !slices.Contains(d.cfg.Ports, firewall.Port{Proto: l.Protocol(), Num: l.Port}):
			ev.Reason = "port no longer in the allow-list"
			d.audit.Write(ev)
			continue
		case !d.configuredUser(l.User):
			ev.Reason = "user no longer configured"
			d.audit.Write(ev)
			continue
		}
		// A lease never outlives what its user may be granted now: a
		// clock that was ahead, or a lease.max since lowered.
		if limit := now.Add(d.leaseLimit(l.User)); l.Expires.After(limit) {
			d.audit.Write(audit.Event{Event: audit.Restore, User: l.User, IP: l.IP, Port: l.Port, Lease: l.ID, Expires: limit,
				Reason: "capped at lease.max", Detail: "stored end " + l.Expires.UTC().Format(time.RFC3339)})
			l.Expires = limit
		}
		d.table.Add(l)
	}
	if err := d.fw.Init(d.cfg.Ports); err != nil {
		return err
	}
	installed, err := d.fw.List()
	if err != nil {
		return err
	}
	want := d.table.Rules(now)
	have := map[lease.Key]firewall.Rule{}
	stale := 0
	for _, r := range installed {
		k := lease.Key{IP: r.IP.Unmap(), Proto: firewall.Proto(r.Proto), Port: r.Port}
		if _, ok := want[k]; !ok {
			if err := d.fw.Delete(r.IP, k.Proto, r.Port); err != nil {
				return err
			}
			stale++
			d.audit.Write(audit.Event{Event: audit.Stale, IP: r.IP, Port: r.Port, Expires: r.Until, Reason: "no live lease"})
			continue
		}
		have[k] = r
	}
	restored := 0
	for k, until := range want {
		r, ok := have[k]
		if ok && !r.Until.IsZero() && absDur(r.Until.Sub(until)) <= time.Second {
			continue
		}
		if err := d.fw.Set(firewall.Rule{IP: k.IP, Proto: k.Proto, Port: k.Port, Until: until}); err != nil {
			return err
		}
		restored++
		d.audit.Write(audit.Event{Event: audit.Restore, IP: k.IP, Port: k.Port, Expires: until})
	}
	if err := d.saveLocked(); err != nil {
		return err
	}
	d.audit.Write(audit.Event{Event: audit.Reconcile, Count: d.table.Len(),
		Detail: fmt.Sprintf("%d live leases, %d rules restored, %d stale rules removed", d.table.Len(), restored, stale)})
	d.log.Info("portgate started", "backend", d.fw.Name(), "live_leases", d.table.Len(), "restored", restored, "stale_removed", stale)
	return nil
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// configuredUser reports whether leases of user may still exist.
func (d *Daemon) configuredUser(user string) bool {
	if user == fixedUser {
		return d.cfg.FixedPassword != nil
	}
	_, ok := d.cfg.userPolicy[user]
	return ok
}

// leaseLimit is the longest lease user may hold.
func (d *Daemon) leaseLimit(user string) time.Duration {
	limit := d.cfg.Lease.Max
	if p, ok := d.cfg.userPolicy[user]; ok && p.MaxLease > 0 {
		limit = min(limit, p.MaxLease)
	}
	return limit
}

// ThrottlePath is where the throttle's state is saved, beside the state
// file.
func (d *Daemon) ThrottlePath() string { return d.cfg.StateFile + ".throttle" }

func (d *Daemon) loadThrottle() error {
	b, err := os.ReadFile(d.ThrottlePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("throttle state: %w", err)
	}
	var st auth.ThrottleState
	if err := json.Unmarshal(b, &st); err != nil {
		// Not fatal: the throttle starts afresh, which the log says.
		d.log.Error("throttle state unreadable; starting without it", "file", d.ThrottlePath(), "err", err)
		return nil
	}
	d.auth.RestoreThrottle(st)
	return nil
}

// SaveThrottle writes the throttle's state when it changed since the last
// save. Run calls it every ThrottleSaveInterval and Shutdown at the end.
func (d *Daemon) SaveThrottle() error {
	if d.auth.Changes() == d.throttleSavedCount() {
		return nil
	}
	st, n := d.auth.Throttle()
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("throttle state: %w", err)
	}
	if err := lease.WriteFileAtomic(d.ThrottlePath(), b); err != nil {
		return fmt.Errorf("throttle state: %w", err)
	}
	d.mu.Lock()
	d.throttleSaved = n
	d.mu.Unlock()
	return nil
}

func (d *Daemon) throttleSavedCount() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.throttleSaved
}

// ThrottleSaveInterval is how often Run saves a changed throttle state: a
// crash loses at most this much of it.
const ThrottleSaveInterval = 5 * time.Second

// Retry redoes what failed earlier: firewall changes (rules that must go)
// and a snapshot owed because a journal write failed. Run calls it.
func (d *Daemon) Retry() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	var errs []error
	for k := range d.resync {
		if err := d.syncRuleLocked(k, now); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(d.resync, k)
	}
	if d.dirty {
		if err := d.saveLocked(); err != nil {
			errs = append(errs, err)
		} else {
			d.dirty = false
		}
	}
	return errors.Join(errs...)
}

// Run ends leases at their expiry until ctx is cancelled, saves the
// throttle's state and retries what failed.
func (d *Daemon) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	tick := time.NewTicker(ThrottleSaveInterval)
	defer tick.Stop()
	reconcile := time.NewTicker(ReconcileInterval)
	defer reconcile.Stop()
	for {
		d.mu.Lock()
		next, ok := d.table.Next()
		d.mu.Unlock()
		wait := time.Hour
		if ok {
			wait = max(next.Sub(d.now()), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
			if err := d.Compact(); err != nil {
				d.log.Error("compacting the state journal", "err", err)
			}
		case <-tick.C:
			if err := d.SaveThrottle(); err != nil {
				d.log.Error("saving the throttle state", "err", err)
			}
			if err := d.Retry(); err != nil {
				d.log.Error("retrying", "err", err)
			}
			d.audit.Flush()
		case <-reconcile.C:
			if err := d.Reconcile(); err != nil {
				d.log.Error("reconciling the firewall", "err", err)
			}
		case <-timer.C:
			if err := d.ExpireDue(); err != nil {
				d.log.Error("ending leases", "err", err)
				// Retry soon rather than spin.
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
	}
}

// ExpireDue ends every lease whose time has come. Run calls it; tests call
// it with a fake clock.
func (d *Daemon) ExpireDue() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	due := d.table.Due(now)
	if len(due) == 0 {
		return nil
	}
	var errs []error
	var ids []string
	for _, l := range due {
		d.table.Remove(l.ID)
		ids = append(ids, l.ID)
	}
	// The state first: an ended lease must not come back at a restart.
	if err := d.persistLocked(lease.Change{Remove: ids}); err != nil {
		errs = append(errs, err)
	}
	for _, l := range due {
		d.syncOrRetryLocked(l.Key(), now, &errs)
		d.audit.Write(audit.Event{Event: audit.Expire, User: l.User, Source: l.Source, IP: l.IP, Port: l.Port, Lease: l.ID, Expires: l.Expires})
	}
	return errors.Join(errs...)
}

// ReconcileInterval is how often Run reconciles the firewall with the
// live leases: a rule portgate owns outlives its lease at most this long,
// whatever happened to it behind portgate's back.
const ReconcileInterval = 10 * time.Second

// Reconcile ends the leases due by the wall clock, then makes portgate's
// rules match the live leases: a rule (nftables element, iptables rule)
// with no live lease is removed, one that would outlast its lease (no
// end, or a later one: re-added by hand, a wall clock stepped forward
// ahead of the kernel's timer) is set again to end with it. Run calls it
// every ReconcileInterval.
func (d *Daemon) Reconcile() error {
	eerr := d.ExpireDue()
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	installed, err := d.fw.List()
	if err != nil {
		return errors.Join(eerr, err)
	}
	want := d.table.Rules(now)
	var errs []error
	stale, fixed := 0, 0
	for _, r := range installed {
		k := lease.Key{IP: r.IP.Unmap(), Proto: firewall.Proto(r.Proto), Port: r.Port}
		until, ok := want[k]
		switch {
		case !ok:
			if err := d.fw.Delete(r.IP, k.Proto, r.Port); err != nil {
				d.resync[k] = true
				errs = append(errs, err)
				continue
			}
			stale++
			d.audit.Write(audit.Event{Event: audit.Stale, IP: r.IP, Port: r.Port, Expires: r.Until, Reason: "no live lease"})
		case r.Until.IsZero() || r.Until.After(until.Add(time.Second)):
			if err := d.fw.Set(firewall.Rule{IP: k.IP, Proto: k.Proto, Port: k.Port, Until: until}); err != nil {
				d.resync[k] = true
				errs = append(errs, err)
				continue
			}
			fixed++
			d.audit.Write(audit.Event{Event: audit.Restore, IP: k.IP, Port: k.Port, Expires: until, Reason: "rule outlasted its lease"})
		}
	}
	if stale+fixed > 0 {
		d.audit.Write(audit.Event{Event: audit.Reconcile, Count: d.table.Len(),
			Detail: fmt.Sprintf("%d live leases, %d rules that outlasted their lease set again, %d stale rules removed", d.table.Len(), fixed, stale)})
	}
	return errors.Join(append([]error{eerr}, errs...)...)
}

// syncRuleLocked makes the rule for k match the leases left on it.
func (d *Daemon) syncRuleLocked(k lease.Key, now time.Time) error {
	if until, ok := d.table.Until(k, now); ok {
		return d.fw.Set(firewall.Rule{IP: k.IP, Proto: k.Proto, Port: k.Port, Until: until})
	}
	return d.fw.Delete(k.IP, k.Proto, k.Port)
}

// syncOrRetryLocked syncs the rule for k, and leaves it to Retry when the
// firewall refuses.
func (d *Daemon) syncOrRetryLocked(k lease.Key, now time.Time, errs *[]error) {
	if err := d.syncRuleLocked(k, now); err != nil {
		d.resync[k] = true
		*errs = append(*errs, err)
	}
}

// saveLocked writes a full snapshot of the state.
func (d *Daemon) saveLocked() error {
	return d.file.Save(lease.State{Leases: d.table.All(), Floors: d.auth.Floors()})
}

// persistLocked journals one change, and writes a snapshot instead when
// the journal has grown well past the live state.
//
// When the journal cannot be written, a snapshot is tried at once and, if
// that fails too, owed (Retry): the change holds in memory and in the
// firewall meanwhile.
func (d *Daemon) persistLocked(c lease.Change) error {
	n, err := d.file.Append(c)
	if err != nil {
		if serr := d.saveLocked(); serr != nil {
			d.dirty = true
			return errors.Join(err, serr)
		}
		return nil
	}
	if n > 2*d.table.Len()+100 && !d.compact {
		// Folded into a snapshot by Run, off the request's path.
		d.compact = true
		d.poke()
	}
	return nil
}

// Compact writes a snapshot when the journal has outgrown the live state.
// Run calls it when persisting asks for it.
func (d *Daemon) Compact() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.compact {
		return nil
	}
	if err := d.saveLocked(); err != nil {
		return err
	}
	d.compact = false
	return nil
}

// floor is the journal change for an accepted code.
func floor(g auth.Grant) lease.Change {
	return lease.Change{Floors: map[string]uint64{g.User: g.Counter}}
}

func (d *Daemon) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Shutdown applies on_shutdown: "keep" leaves live leases (their rules end
// by themselves and the next start reconciles), "close" closes them all.
func (d *Daemon) Shutdown() error {
	terr := d.SaveThrottle()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg.OnShutdown == "close" {
		now := d.now()
		var errs []error
		for _, l := range d.table.All() {
			d.table.Remove(l.ID)
			if err := d.syncRuleLocked(l.Key(), now); err != nil {
				errs = append(errs, err)
			}
			d.audit.Write(audit.Event{Event: audit.Close, User: l.User, Source: l.Source, IP: l.IP, Port: l.Port, Lease: l.ID, Expires: l.Expires, Reason: "shutdown"})
		}
		if err := d.saveLocked(); err != nil {
			errs = append(errs, err)
		}
		d.audit.Write(audit.Event{Event: audit.Stop, Detail: "on_shutdown close: every lease closed"})
		return errors.Join(append(errs, terr, d.file.Close(), d.audit.Flush())...)
	}
	err := d.saveLocked()
	d.audit.Write(audit.Event{Event: audit.Stop, Count: d.table.Len(), Detail: "on_shutdown keep: live leases end on time by themselves"})
	return errors.Join(err, terr, d.file.Close(), d.audit.Flush())
}

// Leases returns the live leases.
func (d *Daemon) Leases() []lease.Lease {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.table.All()
}

// denied audits an authentication refusal and turns it into an API error.
func (d *Daemon) denied(err error, user string, src netip.Addr, port uint16) error {
	var den *auth.Denied
	if !errors.As(err, &den) {
		return err
	}
	d.audit.Write(audit.Event{Event: audit.Deny, User: user, Source: src, Port: port, Reason: string(den.Reason)})
	for _, lo := range den.Lockouts {
		d.audit.Write(audit.Event{Event: audit.Lockout, Scope: lo.Scope, Subject: lo.Subject, User: user, Source: src, Until: lo.Until, Count: lo.Failures, Reason: string(den.Reason)})
		d.log.Warn("lockout", "scope", lo.Scope, "subject", lo.Subject, "until", lo.Until, "lockouts", lo.Count)
	}
	switch {
	case den.Reason == auth.ReasonRateLimited:
		return &api.Error{Status: http.StatusTooManyRequests, Code: api.CodeRateLimited, Message: "too many requests; slow down", RetryAfter: den.RetryAfter}
	case den.Locked():
		return &api.Error{Status: http.StatusTooManyRequests, Code: api.CodeLockedOut, Message: "too many failures; try again later", RetryAfter: den.RetryAfter}
	}
	// Wrong code, replayed code, unknown user: one answer for all.
	return &api.Error{Status: http.StatusUnauthorized, Code: api.CodeAuthFailed, Message: "authentication failed"}
}

func (d *Daemon) refuse(code string, status int, msg string, ev audit.Event) error {
	ev.Event = audit.Deny
	d.audit.Write(ev)
	return &api.Error{Status: status, Code: code, Message: msg}
}

// Open implements api.Service. The allow-list and the duration are checked
// before the code, so a refused port or length costs no code; the user's
// own limits are checked after it, so they reveal nothing to strangers.
func (d *Daemon) Open(ctx context.Context, req api.OpenRequest, src netip.Addr) (api.Granted, error) {
	if den := d.auth.Request(src); den != nil {
		return api.Granted{}, d.denied(den, req.User, src, req.Port)
	}
	ev := audit.Event{User: req.User, Source: src, Port: req.Port, Proto: udpOnly(req.Proto)}
	want, ok := d.cfg.Allowed(req.Port, req.Proto)
	if !ok {
		ev.Reason = "port_not_allowed"
		what := strconv.Itoa(int(req.Port))
		if req.Proto != "" {
			what += "/" + req.Proto
		}
		return api.Granted{}, d.refuse(api.CodePortNotAllowed, http.StatusForbidden, fmt.Sprintf("port %s is not one portgate opens", what), ev)
	}
	ev.Proto = udpOnly(want.Proto)
	if req.Duration != 0 && (req.Duration < d.cfg.Lease.Min || req.Duration > d.cfg.Lease.Max) {
		ev.Reason = "duration_out_of_range"
		return api.Granted{}, d.refuse(api.CodeBadRequest, http.StatusBadRequest, fmt.Sprintf("duration: must be from %s to %s", d.cfg.Lease.Min, d.cfg.Lease.Max), ev)
	}
	// Outside the daemon's lock: a password check is memory-hard work.
	g, err := d.auth.Verify(req.User, req.Code, req.Password, src)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		return api.Granted{}, d.denied(err, req.User, src, req.Port)
	}
	pol := d.cfg.userPolicy[g.User]
	ip := src
	if req.IP.IsValid() && req.IP != src {
		ev.IP = req.IP
		if !pol.StatedIP {
			ev.Reason = "stated_ip_not_allowed"
			return api.Granted{}, d.floorAfter(g, d.refuse(api.CodeIPNotAllowed, http.StatusForbidden, "ip: this user may only open for the address the request comes from", ev))
		}
		if len(pol.StatedIPRanges) > 0 && !slices.ContainsFunc(pol.StatedIPRanges, func(p netip.Prefix) bool { return p.Contains(req.IP) }) {
			ev.Reason = "stated_ip_out_of_range"
			return api.Granted{}, d.floorAfter(g, d.refuse(api.CodeIPNotAllowed, http.StatusForbidden, "ip: outside the ranges this user may open for", ev))
		}
		ip = req.IP
	}
	if len(pol.Ports) > 0 && !slices.Contains(pol.Ports, want) {
		ev.Reason = "port_not_allowed_for_user"
		return api.Granted{}, d.floorAfter(g, d.refuse(api.CodePortNotAllowed, http.StatusForbidden, fmt.Sprintf("port %d is not one this user may open", req.Port), ev))
	}
	dur := req.Duration
	if dur == 0 {
		dur = d.cfg.Lease.Default
	}
	limit := d.leaseLimit(g.User)
	if dur > limit {
		if req.Duration != 0 {
			ev.Reason = "duration_over_user_limit"
			return api.Granted{}, d.floorAfter(g, d.refuse(api.CodeBadRequest, http.StatusBadRequest, fmt.Sprintf("duration: this user may open for at most %s", limit), ev))
		}
		dur = limit
	}
	return d.grantLocked(g, ip, src, want, dur)
}

// udpOnly is the audit's proto field: set for UDP, empty for TCP (as in
// audit logs from before UDP).
func udpOnly(proto string) string {
	if proto == firewall.UDP {
		return proto
	}
	return ""
}

// floorAfter persists the replay floor an accepted code moved, then
// returns err: a refused request must not make its code reusable.
func (d *Daemon) floorAfter(g auth.Grant, err error) error {
	if perr := d.persistLocked(floor(g)); perr != nil {
		d.log.Error("saving state", "err", perr)
	}
	return err
}

// grantLocked installs the rule, then persists the lease (with the replay
// floor the code moved, when a code was used).
func (d *Daemon) grantLocked(g auth.Grant, ip, src netip.Addr, p firewall.Port, dur time.Duration) (api.Granted, error) {
	now := d.now()
	user := g.User
	port := p.Num
	token, hash := lease.NewToken()
	k := lease.Key{IP: ip, Proto: p.Proto, Port: port}
	l, extend := d.table.Find(user, k, now)
	switch {
	case extend:
		// The same user for the same address and port: one lease, longer.
		if end := now.Add(dur); end.After(l.Expires) {
			l.Expires = end
		}
		l.TokenHash = hash
	case d.table.UserLen(user) >= d.cfg.Lease.MaxPerUser:
		return api.Granted{}, d.floorAfter(g, d.refuse(api.CodeTooManyLeases, http.StatusTooManyRequests,
			fmt.Sprintf("this user holds %d leases, the most allowed (lease.max_per_user); close one", d.cfg.Lease.MaxPerUser),
			audit.Event{User: user, Source: src, IP: ip, Port: port, Reason: "too_many_leases_for_user"}))
	case d.table.Len() >= d.cfg.Lease.MaxTotal:
		return api.Granted{}, d.floorAfter(g, d.refuse(api.CodeTooManyLeases, http.StatusServiceUnavailable,
			"portgate holds the most leases allowed (lease.max_total); try again later",
			audit.Event{User: user, Source: src, IP: ip, Port: port, Reason: "too_many_leases"}))
	default:
		l = lease.Lease{ID: lease.NewID(), User: user, IP: ip, Source: src, Port: port, Proto: p.Proto, Created: now, Expires: now.Add(dur), TokenHash: hash}
	}
	old, had := d.table.Get(l.ID)
	d.table.Add(l)
	undo := func() {
		d.table.Remove(l.ID)
		if had {
			d.table.Add(old)
		}
	}
	if err := d.syncRuleLocked(k, now); err != nil {
		undo()
		if ferr := d.syncRuleLocked(k, now); ferr != nil {
			d.resync[k] = true
		}
		d.log.Error("installing rule", "lease", l.ID, "err", err)
		d.audit.Write(audit.Event{Event: audit.Deny, User: user, Source: src, IP: ip, Port: port, Reason: "firewall_error"})
		return api.Granted{}, d.floorAfter(g, err)
	}
	change := lease.Change{Add: []lease.Lease{l}}
	if g.Counter > 0 {
		change.Floors = floor(g).Floors
	}
	if err := d.persistLocked(change); err != nil {
		undo()
		if ferr := d.syncRuleLocked(k, now); ferr != nil {
			d.resync[k] = true
			err = errors.Join(err, ferr)
		}
		d.log.Error("persisting lease", "lease", l.ID, "err", err)
		d.audit.Write(audit.Event{Event: audit.Deny, User: user, Source: src, IP: ip, Port: port, Reason: "state_error"})
		return api.Granted{}, err
	}
	ev := audit.Event{Event: audit.Open, User: user, Source: src, IP: ip, Port: port, Proto: udpOnly(p.Proto), Lease: l.ID, Expires: l.Expires}
	if extend {
		ev.Reason = "extended"
	}
	d.audit.Write(ev)
	d.poke()
	return api.Granted{Lease: l, Token: token}, nil
}

// OpenFixed implements api.Service for the fixed-password mode.
func (d *Daemon) OpenFixed(ctx context.Context, password string, ip netip.Addr, src netip.Addr) (api.Granted, error) {
	fp := d.cfg.FixedPassword
	if fp == nil {
		return api.Granted{}, &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: "fixed-password mode is off"}
	}
	if den := d.auth.Request(src); den != nil {
		return api.Granted{}, d.denied(den, fixedUser, src, fp.Port)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.auth.VerifyPassword(password, src); err != nil {
		return api.Granted{}, d.denied(err, fixedUser, src, fp.Port)
	}
	target := src
	if ip.IsValid() && ip != src {
		if !fp.StatedIP {
			return api.Granted{}, d.refuse(api.CodeIPNotAllowed, http.StatusForbidden, "ipaddr: only the address the request comes from",
				audit.Event{User: fixedUser, Source: src, IP: ip, Port: fp.Port, Reason: "stated_ip_not_allowed"})
		}
		target = ip
	}
	return d.grantLocked(auth.Grant{User: fixedUser}, target, src, firewall.Port{Proto: firewall.TCP, Num: fp.Port}, d.cfg.Lease.Default)
}

// authorize decides who cred is: an admin, a user (TOTP credentials), or
// the holder of l's token (l nil: no lease in question). Tokens that are
// neither are failures of the admin scope, throttled like a user's codes.
func (d *Daemon) authorize(cred api.Credentials, src netip.Addr, l *lease.Lease) (admin bool, user string, err error) {
	if cred.Token != "" {
		if den := d.auth.Admit(auth.AdminScope, src); den != nil {
			return false, "", d.denied(den, auth.AdminScope, src, 0)
		}
		sum := sha256.Sum256([]byte(cred.Token))
		match := 0
		for _, h := range d.cfg.adminHashes {
			match |= subtle.ConstantTimeCompare(sum[:], h)
		}
		switch {
		case match == 1:
			d.auth.Succeed(auth.AdminScope, src)
			return true, "", nil
		case l != nil && l.TokenMatches(cred.Token):
			return false, "", nil
		}
		// Audited (with any back-off it starts); answered as no lease.
		_ = d.denied(d.auth.Fail(auth.ReasonBadToken, auth.AdminScope, src), "", src, 0)
		return false, "", errNoToken
	}
	g, err := d.auth.Verify(cred.User, cred.Code, cred.Password, src)
	if err != nil {
		return false, "", d.denied(err, cred.User, src, 0)
	}
	return false, g.User, d.floorAfter(g, nil)
}

// errNoToken is a token that is neither an admin's nor the lease's: the
// caller answers as for an unknown lease.
var errNoToken = errors.New("token matches nothing")

func (d *Daemon) mayAct(cred api.Credentials, admin bool, user string, l lease.Lease) bool {
	return admin || (user != "" && user == l.User) || (cred.Token != "" && l.TokenMatches(cred.Token))
}

// lookup returns the live lease id for authorize, or nil.
func (d *Daemon) lookup(id string) *lease.Lease {
	l, ok := d.table.Get(id)
	if !ok || !l.Live(d.now()) {
		return nil
	}
	return &l
}

// List implements api.Service: an admin sees every lease, a user their own.
func (d *Daemon) List(ctx context.Context, cred api.Credentials, src netip.Addr) ([]lease.Lease, error) {
	if den := d.auth.Request(src); den != nil {
		return nil, d.denied(den, cred.User, src, 0)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	admin, user, err := d.authorize(cred, src, nil)
	if err != nil && !errors.Is(err, errNoToken) {
		return nil, err
	}
	if !admin && user == "" {
		return nil, &api.Error{Status: http.StatusUnauthorized, Code: api.CodeAuthFailed, Message: "listing needs an admin token or user credentials"}
	}
	var out []lease.Lease
	now := d.now()
	for _, l := range d.table.All() {
		if l.Live(now) && (admin || l.User == user) {
			out = append(out, l)
		}
	}
	return out, nil
}

// Get implements api.Service.
func (d *Daemon) Get(ctx context.Context, id string, cred api.Credentials, src netip.Addr) (lease.Lease, error) {
	if den := d.auth.Request(src); den != nil {
		return lease.Lease{}, d.denied(den, cred.User, src, 0)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	found := d.lookup(id)
	admin, user, err := d.authorize(cred, src, found)
	if err != nil && !errors.Is(err, errNoToken) {
		return lease.Lease{}, err
	}
	if found == nil || !d.mayAct(cred, admin, user, *found) {
		return lease.Lease{}, &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: "no such lease"}
	}
	return *found, nil
}

// Close implements api.Service. An unknown lease and one the credentials
// do not cover get the same answer. The closing is recorded before the
// rule goes, and a journal that cannot be written does not reopen it: the
// snapshot is owed and retried (Retry).
func (d *Daemon) Close(ctx context.Context, id string, cred api.Credentials, src netip.Addr) error {
	if den := d.auth.Request(src); den != nil {
		return d.denied(den, cred.User, src, 0)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.table.Get(id)
	var lp *lease.Lease
	if ok {
		lp = &l
	}
	admin, user, err := d.authorize(cred, src, lp)
	if err != nil && !errors.Is(err, errNoToken) {
		return err
	}
	if !ok || !d.mayAct(cred, admin, user, l) {
		reason := "no_such_lease"
		if ok {
			reason = "not_authorized_for_lease"
		}
		return d.refuse(api.CodeNotFound, http.StatusNotFound, "no such lease", audit.Event{User: user, Source: src, Lease: id, Reason: reason})
	}
	now := d.now()
	d.table.Remove(id)
	var errs []error
	if err := d.persistLocked(lease.Change{Remove: []string{id}}); err != nil {
		d.log.Error("recording a close; the lease is closed, its record is retried", "lease", id, "err", err)
	}
	d.syncOrRetryLocked(l.Key(), now, &errs)
	who := "token"
	switch {
	case admin:
		who = "admin"
	case user != "":
		who = "user"
	}
	d.audit.Write(audit.Event{Event: audit.Close, User: l.User, Source: src, IP: l.IP, Port: l.Port, Lease: l.ID, Expires: l.Expires, Reason: "closed by " + who})
	d.poke()
	return errors.Join(errs...)
}

var _ api.Service = (*Daemon)(nil)
