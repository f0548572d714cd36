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
// is down.
package portgate

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
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
}

// Daemon is a running portgate.
type Daemon struct {
	cfg   *Config
	auth  *auth.Authenticator
	fw    firewall.Backend
	file  *lease.File
	audit *audit.Log
	log   *slog.Logger
	now   func() time.Time

	mu    sync.Mutex
	table *lease.Table
	wake  chan struct{}
}

// ErrFixedPasswordRefused is returned by New when the configuration has a
// fixed_password section but the flag allowing it was not given.
var ErrFixedPasswordRefused = errors.New("fixed_password: the seed's fixed-password mode is refused unless portgate runs with --allow-fixed-password (a shared password can be guessed, shared and replayed; use TOTP users)")

// New builds a daemon. Nothing is changed on the system until Start.
func New(cfg *Config, o Options) (*Daemon, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.FixedPassword != nil && !o.FixedPassword {
		return nil, ErrFixedPasswordRefused
	}
	d := &Daemon{
		cfg:   cfg,
		auth:  auth.New(cfg.users, cfg.Policy(), o.Now),
		fw:    o.Firewall,
		file:  &lease.File{Path: cfg.StateFile},
		audit: o.Audit,
		log:   o.Log,
		now:   o.Now,
		table: lease.NewTable(),
		wake:  make(chan struct{}, 1),
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
	now := d.now()
	d.audit.Write(audit.Event{Event: audit.Start, Detail: fmt.Sprintf("backend %s, ports %v, %d users", d.fw.Name(), d.cfg.Ports, len(d.cfg.users)), Count: len(st.Leases)})
	for _, l := range st.Leases {
		if !l.Live(now) {
			d.audit.Write(audit.Event{Event: audit.Expire, User: l.User, Source: l.Source, IP: l.IP, Port: l.Port, Lease: l.ID, Expires: l.Expires, Reason: "ended while portgate was down"})
			continue
		}
		if !slices.Contains(d.cfg.Ports, l.Port) {
			d.audit.Write(audit.Event{Event: audit.Close, User: l.User, Source: l.Source, IP: l.IP, Port: l.Port, Lease: l.ID, Expires: l.Expires, Reason: "port no longer in the allow-list"})
			continue
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
		k := lease.Key{IP: r.IP.Unmap(), Port: r.Port}
		if _, ok := want[k]; !ok {
			if err := d.fw.Delete(r.IP, r.Port); err != nil {
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
		if err := d.fw.Set(firewall.Rule{IP: k.IP, Port: k.Port, Until: until}); err != nil {
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

// Run ends leases at their expiry until ctx is cancelled.
func (d *Daemon) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
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
		if err := d.syncRuleLocked(l.Key(), now); err != nil {
			errs = append(errs, err)
		}
		d.audit.Write(audit.Event{Event: audit.Expire, User: l.User, Source: l.Source, IP: l.IP, Port: l.Port, Lease: l.ID, Expires: l.Expires})
	}
	if err := d.persistLocked(lease.Change{Remove: ids}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// syncRuleLocked makes the rule for k match the leases left on it.
func (d *Daemon) syncRuleLocked(k lease.Key, now time.Time) error {
	if until, ok := d.table.Until(k, now); ok {
		return d.fw.Set(firewall.Rule{IP: k.IP, Port: k.Port, Until: until})
	}
	return d.fw.Delete(k.IP, k.Port)
}

// saveLocked writes a full snapshot of the state.
func (d *Daemon) saveLocked() error {
	return d.file.Save(lease.State{Leases: d.table.All(), Floors: d.auth.Floors()})
}

// persistLocked journals one change, and writes a snapshot instead when
// the journal has grown well past the live state.
func (d *Daemon) persistLocked(c lease.Change) error {
	n, err := d.file.Append(c)
	if err != nil {
		return err
	}
	if n > 2*d.table.Len()+100 {
		return d.saveLocked()
	}
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
		return errors.Join(append(errs, d.file.Close())...)
	}
	err := d.saveLocked()
	d.audit.Write(audit.Event{Event: audit.Stop, Count: d.table.Len(), Detail: "on_shutdown keep: live leases end on time by themselves"})
	return errors.Join(err, d.file.Close())
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
	if den.Locked() {
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
	ev := audit.Event{User: req.User, Source: src, Port: req.Port}
	if !slices.Contains(d.cfg.Ports, req.Port) {
		ev.Reason = "port_not_allowed"
		return api.Granted{}, d.refuse(api.CodePortNotAllowed, http.StatusForbidden, fmt.Sprintf("port %d is not one portgate opens", req.Port), ev)
	}
	if req.Duration != 0 && (req.Duration < d.cfg.Lease.Min || req.Duration > d.cfg.Lease.Max) {
		ev.Reason = "duration_out_of_range"
		return api.Granted{}, d.refuse(api.CodeBadRequest, http.StatusBadRequest, fmt.Sprintf("duration: must be from %s to %s", d.cfg.Lease.Min, d.cfg.Lease.Max), ev)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	g, err := d.auth.Verify(req.User, req.Code, src)
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
	if len(pol.Ports) > 0 && !slices.Contains(pol.Ports, req.Port) {
		ev.Reason = "port_not_allowed_for_user"
		return api.Granted{}, d.floorAfter(g, d.refuse(api.CodePortNotAllowed, http.StatusForbidden, fmt.Sprintf("port %d is not one this user may open", req.Port), ev))
	}
	dur := req.Duration
	if dur == 0 {
		dur = d.cfg.Lease.Default
	}
	limit := d.cfg.Lease.Max
	if pol.MaxLease > 0 {
		limit = min(limit, pol.MaxLease)
	}
	if dur > limit {
		if req.Duration != 0 {
			ev.Reason = "duration_over_user_limit"
			return api.Granted{}, d.floorAfter(g, d.refuse(api.CodeBadRequest, http.StatusBadRequest, fmt.Sprintf("duration: this user may open for at most %s", limit), ev))
		}
		dur = limit
	}
	return d.grantLocked(g, ip, src, req.Port, dur)
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
func (d *Daemon) grantLocked(g auth.Grant, ip, src netip.Addr, port uint16, dur time.Duration) (api.Granted, error) {
	now := d.now()
	user := g.User
	token, hash := lease.NewToken()
	l := lease.Lease{ID: lease.NewID(), User: user, IP: ip, Source: src, Port: port, Created: now, Expires: now.Add(dur), TokenHash: hash}
	d.table.Add(l)
	if err := d.syncRuleLocked(l.Key(), now); err != nil {
		d.table.Remove(l.ID)
		d.log.Error("installing rule", "lease", l.ID, "err", err)
		d.audit.Write(audit.Event{Event: audit.Deny, User: user, Source: src, IP: ip, Port: port, Reason: "firewall_error"})
		return api.Granted{}, d.floorAfter(g, err)
	}
	change := lease.Change{Add: []lease.Lease{l}}
	if g.Counter > 0 {
		change.Floors = floor(g).Floors
	}
	if err := d.persistLocked(change); err != nil {
		d.table.Remove(l.ID)
		if ferr := d.syncRuleLocked(l.Key(), now); ferr != nil {
			err = errors.Join(err, ferr)
		}
		d.log.Error("persisting lease", "lease", l.ID, "err", err)
		d.audit.Write(audit.Event{Event: audit.Deny, User: user, Source: src, IP: ip, Port: port, Reason: "state_error"})
		return api.Granted{}, err
	}
	d.audit.Write(audit.Event{Event: audit.Open, User: user, Source: src, IP: ip, Port: port, Lease: l.ID, Expires: l.Expires})
	d.poke()
	return api.Granted{Lease: l, Token: token}, nil
}

// OpenFixed implements api.Service for the fixed-password mode.
func (d *Daemon) OpenFixed(ctx context.Context, password string, ip netip.Addr, src netip.Addr) (api.Granted, error) {
	fp := d.cfg.FixedPassword
	if fp == nil {
		return api.Granted{}, &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: "fixed-password mode is off"}
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
	return d.grantLocked(auth.Grant{User: fixedUser}, target, src, fp.Port, d.cfg.Lease.Default)
}

// authorize decides whether cred may act on l (nil l: on all leases, which
// only an admin token or a user for their own may).
func (d *Daemon) authorize(cred api.Credentials, src netip.Addr) (admin bool, user string, err error) {
	if cred.Token != "" {
		sum := sha256.Sum256([]byte(cred.Token))
		for _, h := range d.cfg.adminHashes {
			if subtle.ConstantTimeCompare(sum[:], h) == 1 {
				return true, "", nil
			}
		}
		return false, "", nil
	}
	g, err := d.auth.Verify(cred.User, cred.Code, src)
	if err != nil {
		return false, "", d.denied(err, cred.User, src, 0)
	}
	return false, g.User, d.floorAfter(g, nil)
}

func (d *Daemon) mayAct(cred api.Credentials, admin bool, user string, l lease.Lease) bool {
	return admin || (user != "" && user == l.User) || (cred.Token != "" && l.TokenMatches(cred.Token))
}

// List implements api.Service: an admin sees every lease, a user their own.
func (d *Daemon) List(ctx context.Context, cred api.Credentials, src netip.Addr) ([]lease.Lease, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	admin, user, err := d.authorize(cred, src)
	if err != nil {
		return nil, err
	}
	if !admin && user == "" {
		return nil, d.refuse(api.CodeAuthFailed, http.StatusUnauthorized, "listing needs an admin token or user credentials", audit.Event{Source: src, Reason: "bad_token"})
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
	d.mu.Lock()
	defer d.mu.Unlock()
	admin, user, err := d.authorize(cred, src)
	if err != nil {
		return lease.Lease{}, err
	}
	l, ok := d.table.Get(id)
	if !ok || !l.Live(d.now()) || !d.mayAct(cred, admin, user, l) {
		return lease.Lease{}, &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: "no such lease"}
	}
	return l, nil
}

// Close implements api.Service. An unknown lease and one the credentials
// do not cover get the same answer.
func (d *Daemon) Close(ctx context.Context, id string, cred api.Credentials, src netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	admin, user, err := d.authorize(cred, src)
	if err != nil {
		return err
	}
	l, ok := d.table.Get(id)
	if !ok || !d.mayAct(cred, admin, user, l) {
		reason := "no_such_lease"
		if ok {
			reason = "not_authorized_for_lease"
		}
		return d.refuse(api.CodeNotFound, http.StatusNotFound, "no such lease", audit.Event{User: user, Source: src, Lease: id, Reason: reason})
	}
	now := d.now()
	d.table.Remove(id)
	if err := d.syncRuleLocked(l.Key(), now); err != nil {
		d.table.Add(l)
		return err
	}
	if err := d.persistLocked(lease.Change{Remove: []string{id}}); err != nil {
		return err
	}
	who := "token"
	switch {
	case admin:
		who = "admin"
	case user != "":
		who = "user"
	}
	d.audit.Write(audit.Event{Event: audit.Close, User: l.User, Source: src, IP: l.IP, Port: l.Port, Lease: l.ID, Expires: l.Expires, Reason: "closed by " + who})
	d.poke()
	return nil
}

var _ api.Service = (*Daemon)(nil)
