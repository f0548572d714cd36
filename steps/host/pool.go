package host

import (
	"context"
	"errors"
	"sync"

	"github.com/kevinburke/ssh_config"
)

// Pool opens hosts and keeps them open: every step of a run that names the
// same host shares one connection. The zero value is ready to use.
type Pool struct {
	// SSHConfig is the OpenSSH client config ssh:// names are resolved
	// through; empty means ~/.ssh/config (a missing file is an empty
	// config).
	SSHConfig string

	mu    sync.Mutex
	hosts map[string]*poolEntry

	sshMu   sync.Mutex
	sshPath string // the SSHConfig sshCfg was read from
	sshCfg  *ssh_config.Config
}

// sshConfig parses SSHConfig on first use, and again when it changed.
func (p *Pool) sshConfig() (*ssh_config.Config, error) {
	p.sshMu.Lock()
	defer p.sshMu.Unlock()
	if p.sshCfg != nil && p.sshPath == p.SSHConfig {
		return p.sshCfg, nil
	}
	cfg, err := loadSSHConfig(p.SSHConfig)
	if err != nil {
		return nil, err
	}
	p.sshCfg, p.sshPath = cfg, p.SSHConfig
	return cfg, nil
}

type poolEntry struct {
	ready chan struct{}
	h     Host
	err   error
}

// Default is the process's pool: `opsdrill run` sets its SSHConfig and
// closes it at the end of the run.
var Default = &Pool{}

type poolKey struct{}

// WithPool returns a context whose Open calls use p instead of Default.
func WithPool(ctx context.Context, p *Pool) context.Context {
	return context.WithValue(ctx, poolKey{}, p)
}

// FromContext returns the pool Open uses for ctx.
func FromContext(ctx context.Context) *Pool {
	if p, ok := ctx.Value(poolKey{}).(*Pool); ok {
		return p
	}
	return Default
}

// Open opens ref through the context's pool.
func Open(ctx context.Context, ref string) (Host, error) {
	return FromContext(ctx).Open(ctx, ref)
}

// Open returns the host ref names, connecting on first use. Concurrent
// callers of the same host wait for one connection attempt and share its
// outcome; a failed open is not remembered, so a later step tries again.
func (p *Pool) Open(ctx context.Context, ref string) (Host, error) {
	r, err := Parse(ref)
	if err != nil {
		return nil, err
	}
	return p.OpenRef(ctx, r)
}

// OpenRef is Open for a parsed reference.
func (p *Pool) OpenRef(ctx context.Context, r Ref) (Host, error) {
	return p.open(ctx, r.String(), func() (Host, error) {
		t, err := lookup(r.Scheme)
		if err != nil {
			return nil, err
		}
		if err := t.Check(r); err != nil {
			return nil, err
		}
		return t.Open(ctx, r, p)
	})
}

// open returns the pooled host under key, creating it with mk when absent.
// Transports use it for hosts that have no reference of their own (an SSH
// hop reached through another).
func (p *Pool) open(ctx context.Context, key string, mk func() (Host, error)) (Host, error) {
	p.mu.Lock()
	if p.hosts == nil {
		p.hosts = map[string]*poolEntry{}
	}
	e, ok := p.hosts[key]
	if !ok {
		e = &poolEntry{ready: make(chan struct{})}
		p.hosts[key] = e
		p.mu.Unlock()
		e.h, e.err = mk()
		if e.err != nil {
			p.mu.Lock()
			delete(p.hosts, key)
			p.mu.Unlock()
		}
		close(e.ready)
		return e.h, e.err
	}
	p.mu.Unlock()
	select {
	case <-e.ready:
		// Waiters share the attempt they waited for, failed or not.
		return e.h, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close closes every host the pool opened. The pool can be used again.
func (p *Pool) Close() error {
	p.mu.Lock()
	hosts := p.hosts
	p.hosts = nil
	p.mu.Unlock()
	var errs []error
	for _, e := range hosts {
		<-e.ready
		if e.h != nil {
			errs = append(errs, e.h.Close())
		}
	}
	return errors.Join(errs...)
}

// CheckSSHConfig reads the pool's SSHConfig: an error names the file.
func (p *Pool) CheckSSHConfig() error {
	_, err := p.sshConfig()
	return err
}
