// Command portgate opens a TCP port for a caller's address for a limited
// time after a TOTP check: the OTP version of the seed runbook "How To
// Securely Open Ports (SSH, RDP etc.) On-Demand For Dynamic IPs Through
// iptables".
//
//	portgate --config /etc/portgate/config.yaml
//	portgate hash-password < password.txt   # a password_hash for the configuration
//
// It serves HTTPS (certificate and key from the configuration or
// --tls-cert/--tls-key); plain HTTP only with --insecure-plain-http. On
// SIGTERM or SIGINT it stops serving and applies on_shutdown (keep or close
// live leases). See package portgate for the configuration and package api
// for the HTTP interface.
//
// Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration or flags.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opsdrill/opsdrill/portgate"
	"github.com/opsdrill/opsdrill/portgate/api"
	"github.com/opsdrill/opsdrill/portgate/audit"
	"github.com/opsdrill/opsdrill/portgate/auth"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

type usageError struct{ error }

func run(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "hash-password" {
		return hashPassword(args[1:], os.Stdin, os.Stdout, stderr)
	}
	fs := flag.NewFlagSet("portgate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configPath = fs.String("config", "/etc/portgate/config.yaml", "configuration file")
		tlsCert    = fs.String("tls-cert", "", "TLS certificate (PEM); overrides tls.cert")
		tlsKey     = fs.String("tls-key", "", "TLS private key (PEM); overrides tls.key")
		plain      = fs.Bool("insecure-plain-http", false, "serve plain HTTP: codes and tokens cross the network in clear text")
		fixed      = fs.Bool("allow-fixed-password", false, "allow the seed's fixed-password mode (fixed_password in the configuration)")
		logFile    = fs.String("log-file", "", "operational log file (default: standard error)")
		check      = fs.Bool("check", false, "check the configuration and exit")
		perms      = fs.Bool("insecure-perms", false, "start even when files holding keys are readable by the group or others")
	)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: portgate [flags]\n       portgate hash-password < FILE\n\nOpens a port for the caller's address for a lease, after a TOTP check.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "portgate: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	logOut := stderr
	if *logFile != "" {
		f, err := openAppend(*logFile, 0o640)
		if err != nil {
			fmt.Fprintf(stderr, "portgate: --log-file: %v\n", err)
			return 2
		}
		defer f.Close()
		logOut = f
	}
	log := slog.New(slog.NewTextHandler(logOut, nil))
	err := serve(*configPath, *tlsCert, *tlsKey, *plain, *fixed, *check, *perms, log)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		log.Error("portgate: " + err.Error())
		fmt.Fprintln(stderr, "portgate:", err)
		return 2
	default:
		log.Error("portgate: " + err.Error())
		return 1
	}
}

func serve(configPath, tlsCert, tlsKey string, plain, fixed, check, insecurePerms bool, log *slog.Logger) error {
	cfg, err := portgate.LoadConfig(configPath)
	if err != nil {
		return usageError{err}
	}
	if tlsCert != "" || tlsKey != "" {
		cfg.TLS.Cert, cfg.TLS.Key = tlsCert, tlsKey
	}
	if (cfg.TLS.Cert == "") != (cfg.TLS.Key == "") {
		return usageError{errors.New("TLS: give both a certificate and a key")}
	}
	useTLS := cfg.TLS.Cert != ""
	if !useTLS && !plain {
		return usageError{errors.New("TLS: give --tls-cert and --tls-key (or tls: in the configuration); plain HTTP only with --insecure-plain-http")}
	}
	if useTLS && plain {
		return usageError{errors.New("--insecure-plain-http and a TLS certificate: choose one")}
	}
	if cfg.FixedPassword != nil && !fixed {
		return usageError{portgate.ErrFixedPasswordRefused}
	}
	if err := checkPerms(cfg, insecurePerms, log); err != nil {
		return usageError{err}
	}
	if plain {
		log.Warn("serving PLAIN HTTP (--insecure-plain-http): codes and lease tokens cross the network in clear text; use only on a trusted link")
	}
	if cfg.FixedPassword != nil {
		log.Warn("FIXED-PASSWORD MODE (--allow-fixed-password): one shared password opens the port, as in the seed runbook; it can be guessed, shared and sniffed. Prefer TOTP users.")
	}
	if *cfg.TOTP.Window > 1 {
		log.Warn("totp.window above 1 accepts older codes; fix client clocks instead", "window", *cfg.TOTP.Window)
	}
	var tlsCfg *tls.Config
	if useTLS {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return usageError{fmt.Errorf("TLS: %w", err)}
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	if check {
		fmt.Println("configuration ok")
		return nil
	}

	auditLog := audit.New(os.Stdout, nil)
	if cfg.AuditLog != "-" {
		if err := os.MkdirAll(filepath.Dir(cfg.AuditLog), 0o750); err != nil {
			return usageError{fmt.Errorf("audit_log: %w", err)}
		}
		auditLog, err = audit.OpenFile(cfg.AuditLog, audit.FileOptions{MaxBytes: cfg.AuditRotate.MaxBytes, Keep: cfg.AuditRotate.Keep}, nil)
		if err != nil {
			return usageError{fmt.Errorf("audit_log: %w", err)}
		}
	}
	defer auditLog.Close()
	if err := os.MkdirAll(filepath.Dir(cfg.StateFile), 0o700); err != nil {
		return fmt.Errorf("state_file: %w", err)
	}
	d, err := portgate.New(cfg, portgate.Options{Audit: auditLog, Log: log, FixedPassword: fixed})
	if err != nil {
		return usageError{err}
	}
	if err := d.Start(); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           api.NewHandler(d, api.Options{FixedPassword: cfg.FixedPassword != nil}),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reaper := make(chan struct{})
	go func() {
		defer close(reaper)
		d.Run(ctx)
	}()
	served := make(chan error, 1)
	go func() {
		if useTLS {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()
	log.Info("portgate listening", "addr", ln.Addr().String(), "tls", useTLS)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-reaper
	err = d.Shutdown()
	if aerr := auditLog.Err(); aerr != nil {
		log.Error("the audit log could not be written", "err", aerr)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return errors.Join(fmt.Errorf("serve: %w", serveErr), err)
	}
	if err != nil {
		return err
	}
	log.Info("portgate stopped", "on_shutdown", cfg.OnShutdown)
	return nil
}

// checkPerms refuses key files (and a configuration with inline keys, and
// the TLS key) that the group or others can read, unless --insecure-perms.
func checkPerms(cfg *portgate.Config, insecure bool, log *slog.Logger) error {
	err := cfg.CheckPerms()
	if cfg.TLS.Key != "" {
		if st, serr := os.Stat(cfg.TLS.Key); serr == nil && st.Mode().Perm()&0o077 != 0 {
			err = errors.Join(err, fmt.Errorf("%s (TLS key) has mode %04o: group and others must have no access (chmod 600 %s)", cfg.TLS.Key, st.Mode().Perm(), cfg.TLS.Key))
		}
	}
	if err == nil {
		return nil
	}
	if insecure {
		log.Warn("INSECURE PERMISSIONS (--insecure-perms): starting although key material is readable by others", "problems", err.Error())
		return nil
	}
	return fmt.Errorf("refusing to start: %w (or run with --insecure-perms)", err)
}

// hashPassword reads a password (its first line) from stdin and prints an
// argon2id hash for password_hash. The password never goes on a command
// line.
func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: portgate hash-password < FILE  (the password is read from standard input, never from arguments)")
		return 2
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 1025))
	if err != nil {
		fmt.Fprintf(stderr, "portgate hash-password: %v\n", err)
		return 1
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if len(pw) > 1024 {
		fmt.Fprintln(stderr, "portgate hash-password: the password is longer than 1024 bytes")
		return 2
	}
	if len(pw) < 8 {
		fmt.Fprintln(stderr, "portgate hash-password: use a password of at least 8 characters")
		return 2
	}
	h, err := auth.HashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "portgate hash-password: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}

func openAppend(path string, mode os.FileMode) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, mode)
}
