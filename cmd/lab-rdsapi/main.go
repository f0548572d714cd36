// Command lab-rdsapi is the opsdrill lab's RDS API: the slice of the
// Amazon RDS Query API a failover drill uses (package lab/rdsapi), served
// from the mariadb-pair's db-dns host to requests signed with the lab's
// access key, acting on the pair over the lab's network.
//
//	lab-rdsapi --config /etc/opsdrill/rdsapi/config.yaml --log-file /var/log/opsdrill-rdsapi.log
//
// `opsdrill lab up mariadb-pair` builds it, copies it into db-dns with
// its configuration (0600: it holds the secret access key; see
// lab.PairAPIConfig) and starts it. On SIGTERM or SIGINT it stops serving
// and lets the operation under way finish.
//
// Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration or flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/rdsapi"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("lab-rdsapi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", lab.PairAPIConfigPath, "configuration file")
	logFile := fs.String("log-file", "", "log file (default: standard error)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := log.New(stderr, "", log.LstdFlags|log.LUTC)
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintf(stderr, "lab-rdsapi: %v\n", err)
			return 2
		}
		defer f.Close()
		logger.SetOutput(f)
	}
	cfg, err := lab.ReadPairAPIConfig(*configPath)
	if err != nil {
		logger.Printf("lab-rdsapi: %v", err)
		return 2
	}
	key, err := os.ReadFile(cfg.SSHKey)
	if err != nil {
		logger.Printf("lab-rdsapi: ssh_key: %v", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, key, logger); err != nil {
		logger.Printf("lab-rdsapi: %v", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg lab.PairAPIConfig, key []byte, logger *log.Logger) error {
	pair, err := lab.ServicePair(ctx, cfg.Lab, key, cfg.KnownHosts)
	if err != nil {
		return err
	}
	pair.Logf = logger.Printf
	// A busy file left by an earlier run is stale: its pid may be reused.
	if err := os.Remove(lab.PairAPIBusyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	backend := rdsapi.NewLab(pair)
	backend.BusyFile = lab.PairAPIBusyFile
	if cfg.AZLag > 0 {
		backend.AZLag = cfg.AZLag
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	creds := aws.Credentials{AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey, Source: "opsdrill lab"}
	srv := rdsapi.Serve(ln, backend, cfg.Region, creds)
	logger.Printf("lab-rdsapi: lab %s: serving the RDS API of %s at %s (region %s)", cfg.Lab, lab.PairInstance, srv.URL, cfg.Region)
	<-ctx.Done()
	logger.Printf("lab-rdsapi: stopping; the operation under way finishes first")
	done := make(chan error, 1)
	go func() { done <- backend.Wait() }()
	var opErr error
	select {
	case opErr = <-done:
	case <-time.After(backend.Timeout):
		opErr = errors.New("the operation under way did not finish")
	}
	return errors.Join(opErr, srv.Close())
}
