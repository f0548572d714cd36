package lab

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/client"
)

// The mariadb-pair environment is the lab's stand-in for an Amazon RDS
// Multi-AZ MySQL/MariaDB instance: a primary and a standby MariaDB 10.11
// (GTID replication, binary log and InnoDB redo log synced at every commit,
// semi-synchronous replication waiting AFTER_SYNC, or asynchronous), and a
// dnsmasq resolver holding the instance endpoint as a CNAME to the host
// that is primary, like RDS's endpoint (TTL 5 s).
//
// Both database hosts start read-only; Setup makes db-a writable. A host
// restarted after a crash or a reboot therefore never accepts writes until
// it is promoted, which is how a standby behaves.
//
// MariaDBPair drives a running pair from any process: the db.failover step
// (lab driver) uses it through the container engine to kill or partition
// the primary, promote the standby and repoint the endpoint; the lab's
// RDS-compatible API, a service on db-dns (env_mariadb_api.go), uses it
// over SSH (ServicePair) to reboot and switch over.
const (
	// PairEnv is the environment's name.
	PairEnv = "mariadb-pair"
	// PairEndpoint is the instance endpoint, a CNAME served by db-dns.
	PairEndpoint = "testrds.drill.lab-1.rds.lab"
	// PairInstance and PairCluster are the identifiers the lab's RDS API
	// answers to.
	PairInstance = "testrds"
	PairCluster  = "testrds-cluster"
	// PairRegion is the region the lab's RDS API claims to be.
	PairRegion = "lab-1"
	// PairDatabase and PairUser are the drill's schema and login.
	PairDatabase = "drill"
	PairUser     = "drill"
	// PairPort is the MariaDB port of both database hosts.
	PairPort = 3306
	// PairDNSHost is the resolver host.
	PairDNSHost = "db-dns"

	// ReplicationEnv selects the replication mode at `lab up`:
	// "semi-sync" (default) or "async".
	ReplicationEnv = "OPSDRILL_MARIADB_REPLICATION"
)

// Replication modes of the pair.
const (
	SemiSync = "semi-sync"
	Async    = "async"
)

// pairNode is one database host of the pair and where RDS would place it.
type pairNode struct {
	host     string
	az       string
	dnsName  string
	serverID int
}

var pairNodes = []pairNode{
	{host: "db-a", az: "lab-1a", dnsName: "db-a.lab-1a.compute.lab", serverID: 1},
	{host: "db-b", az: "lab-1b", dnsName: "db-b.lab-1b.compute.lab", serverID: 2},
}

const (
	pairConfDir      = "/etc/mysql/mariadb.conf.d/"
	pairModeConf     = pairConfDir + "91-opsdrill-replication.cnf"
	pairReplPassFile = "/etc/mysql/opsdrill-repl.pass"
	dnsConf          = "/etc/dnsmasq.d/opsdrill-pair.conf"
	dnsEndpointConf  = "/etc/dnsmasq.d/opsdrill-endpoint.conf"
	dnsRestart       = "/usr/local/sbin/opsdrill-dns-restart"
	endpointTTL      = 5
)

func pairServerConf(n pairNode) string {
	return fmt.Sprintf(`# opsdrill mariadb-pair: durability and replication as on RDS Multi-AZ.
[mariadbd]
bind-address = 0.0.0.0
skip-name-resolve = ON
server_id = %d
log_error = /var/lib/mysql/error.log
max_connections = 1000
innodb_buffer_pool_size = 256M
innodb_flush_log_at_trx_commit = 1
sync_binlog = 1
log_bin = binlog
binlog_format = ROW
log_slave_updates = ON
gtid_strict_mode = ON
relay_log = relay
relay_log_recovery = ON
read_only = ON
rpl_semi_sync_master_wait_point = AFTER_SYNC
# Without a connected standby the primary goes on alone (as RDS does while
# it replaces a standby); with one, no commit is acknowledged before the
# standby has the transaction.
rpl_semi_sync_master_wait_no_slave = OFF
rpl_semi_sync_master_timeout = 30000
`, n.serverID)
}

func pairModeConfText(mode string) string {
	on := "OFF"
	if mode == SemiSync {
		on = "ON"
	}
	return fmt.Sprintf("# written by opsdrill: replication mode %s\n[mariadbd]\nrpl_semi_sync_master_enabled = %s\nrpl_semi_sync_slave_enabled = %s\n", mode, on, on)
}

// dnsRestartScript restarts dnsmasq so that it rereads the endpoint's CNAME
// (dnsmasq reads cname= lines only at start). It does nothing before Setup
// wrote the configuration.
const dnsRestartScript = `#!/bin/sh
[ -f ` + dnsConf + ` ] || exit 0
if [ -f /run/dnsmasq.pid ]; then
	pid=$(cat /run/dnsmasq.pid)
	kill "$pid" 2>/dev/null
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.01; i=$((i+1)); done
fi
exec dnsmasq --conf-file=` + dnsConf + `
`

func pairHostSpec(n pairNode) HostSpec {
	return withPairSecurity(HostSpec{
		Name: n.host,
		Files: []File{
			{Path: pairConfDir + "90-opsdrill.cnf", Content: []byte(pairServerConf(n))},
			{Path: pairModeConf, Content: []byte(pairModeConfText(SemiSync))},
		},
		Start: []Command{
			{Args: []string{"sh", "-c", "mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld"}},
			{Args: []string{"mariadbd", "--user=mysql"}, Detach: true},
		},
		Ready: &Probe{Cmd: []string{"mariadb", "-e", "SELECT 1"}, Timeout: 2 * time.Minute},
	})
}

func pairDNSSpec() HostSpec {
	return HostSpec{
		Name:  PairDNSHost,
		Files: []File{{Path: dnsRestart, Content: []byte(dnsRestartScript), Mode: 0o755}},
		// The RDS API service starts again with its host once Setup
		// installed it.
		Start: []Command{{Args: []string{dnsRestart}}, pairAPIStart},
	}
}

func init() {
	RegisterEnv(Env{
		Name:  PairEnv,
		Doc:   "RDS Multi-AZ stand-in: MariaDB primary + standby (GTID, semi-sync) behind a dnsmasq endpoint CNAME, and its RDS API as a service on db-dns",
		Hosts: []HostSpec{pairHostSpec(pairNodes[0]), pairHostSpec(pairNodes[1]), pairDNSSpec()},
		Setup: setupPair,
		Vars:  pairVars,
		AWS:   pairAWS,
	})
}

// pairVars are the names scenarios/rds-multi-az-failover.yaml reads.
func pairVars(l *Lab) (map[string]any, map[string]string) {
	v := map[string]any{
		"rds_endpoint": PairEndpoint,
		"rds_port":     PairPort,
		"rds_instance": PairInstance,
		"rds_region":   PairRegion,
		"rds_lab":      l.ID,
		"rds_user":     PairUser,
		"rds_database": PairDatabase,
		"mariadb_pair": map[string]any{"lab": l.ID, "writer": pairNodes[0].host, "standby": pairNodes[1].host},
	}
	if dns, err := l.Host(PairDNSHost); err == nil {
		v["rds_resolver"] = dns.Addr(53)
		v["rds_api_endpoint"] = pairAPIURL(dns)
	}
	keyID, secret := pairAPICredentials(l)
	v["rds_api_access_key_id"] = keyID
	maps.Copy(v, pairSecurityVars(l))
	return v, map[string]string{"rds_password": l.Password("mariadb-pair/drill"), "rds_api_secret_access_key": secret}
}

func setupPair(ctx context.Context, l *Lab) error {
	mode := os.Getenv(ReplicationEnv)
	if mode == "" {
		mode = SemiSync
	}
	if mode != SemiSync && mode != Async {
		return fmt.Errorf("%s=%q: use %s or %s", ReplicationEnv, mode, SemiSync, Async)
	}
	if err := setupPairSecurity(ctx, l); err != nil {
		return err
	}
	p := &MariaDBPair{LabID: l.ID}
	for i, n := range pairNodes {
		h, err := l.Host(n.host)
		if err != nil {
			return err
		}
		p.nodes[i] = h
	}
	dns, err := l.Host(PairDNSHost)
	if err != nil {
		return err
	}
	p.dns = dns
	primary, standby := p.nodes[0], p.nodes[1]
	replPass := l.Password("mariadb-pair/repl")
	for _, h := range p.nodes {
		if err := writeFile(ctx, h, pairReplPassFile, replPass, true); err != nil {
			return err
		}
	}
	// Everything below is binlogged on the primary, so the standby gets the
	// schema and the users by replicating from the start.
	setup := fmt.Sprintf(`SET GLOBAL read_only = OFF;
CREATE DATABASE IF NOT EXISTS %s;
CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s';
GRANT ALL PRIVILEGES ON %s.* TO '%s'@'%%';
CREATE USER IF NOT EXISTS 'repl'@'%%' IDENTIFIED BY '%s';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'%%';`,
		PairDatabase, PairUser, l.Password("mariadb-pair/drill"), PairDatabase, PairUser, replPass)
	if _, err := p.SQL(ctx, primary, setup); err != nil {
		return fmt.Errorf("set up primary %s: %w", primary.Name, err)
	}
	if err := grantPairAudit(ctx, p, primary); err != nil {
		return err
	}
	var hosts strings.Builder
	hosts.WriteString("# opsdrill mariadb-pair resolver\nno-resolv\nno-hosts\nno-poll\n")
	hosts.WriteString("pid-file=/run/dnsmasq.pid\nlog-facility=/var/log/dnsmasq.log\n")
	fmt.Fprintf(&hosts, "local-ttl=%d\n", endpointTTL)
	for i, n := range pairNodes {
		fmt.Fprintf(&hosts, "host-record=%s,%s\n", n.dnsName, p.nodes[i].IP)
	}
	fmt.Fprintf(&hosts, "conf-file=%s\n", dnsEndpointConf)
	if err := writeFile(ctx, dns, dnsConf, hosts.String(), false); err != nil {
		return err
	}
	if err := p.PointEndpoint(ctx, primary); err != nil {
		return err
	}
	if err := p.replicate(ctx, standby, primary, "slave_pos"); err != nil {
		return err
	}
	if err := p.SetReplication(ctx, mode); err != nil {
		return err
	}
	return setupPairAPI(ctx, l, dns, p.nodes)
}

// MariaDBPair is a running mariadb-pair environment. Open it with
// OpenMariaDBPair; every method takes the lab's live state (which host the
// endpoint names, which hosts run) rather than remembering it, so several
// processes may drive the same pair one after the other.
type MariaDBPair struct {
	LabID string
	// Logf, when set, receives a line per stage of a failover, switchover
	// or rebuild, with its time.
	Logf func(format string, args ...any)
	// OnFault, when set, is called at the instant a fault struck the
	// writer (killed, cut off), for a drill's timeline.
	OnFault func(what string, at time.Time)

	nodes   [2]*Host
	dns     *Host
	opStart time.Time
}

// begin starts timing an operation for logf.
func (p *MariaDBPair) begin() { p.opStart = time.Now() }

// fault reports a fault that struck now.
func (p *MariaDBPair) fault(what string) {
	at := time.Now()
	if p.OnFault != nil {
		p.OnFault(what, at)
	}
	p.logf("%s", what)
}

func (p *MariaDBPair) logf(format string, args ...any) {
	if p.Logf != nil {
		p.Logf(format+" (+%s)", append(args, time.Since(p.opStart).Round(time.Millisecond))...)
	}
}

// PairIdentity says which server a host of the pair is.
type PairIdentity struct {
	Host     string // lab host name
	AZ       string // availability zone the lab's RDS API reports for it
	DNSName  string // the name the endpoint CNAME points at when it is primary
	ServerID int
	ReadOnly bool
	Running  bool
}

// OpenMariaDBPair finds the mariadb-pair of lab labID, or of the only lab
// running one when labID is empty. Hosts are found by their labels, also
// when they are stopped (a killed primary stays part of the pair).
func OpenMariaDBPair(ctx context.Context, labID string) (*MariaDBPair, error) {
	e, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	res, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", LabelEnv+"="+PairEnv)})
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", PairEnv, err)
	}
	labs := map[string]bool{}
	for _, c := range res.Items {
		labs[c.Labels[LabelLab]] = true
	}
	if labID == "" {
		switch len(labs) {
		case 0:
			return nil, fmt.Errorf("%w: no lab runs %s; start one with `opsdrill lab up %s`", ErrNoLab, PairEnv, PairEnv)
		case 1:
			for id := range labs {
				labID = id
			}
		default:
			return nil, fmt.Errorf("several labs run %s; name one by its id", PairEnv)
		}
	}
	if !labs[labID] {
		return nil, fmt.Errorf("%w: lab %q does not run %s", ErrNoLab, labID, PairEnv)
	}
	l := &Lab{ID: labID, Network: "opsdrill-" + labID, eng: e}
	p := &MariaDBPair{LabID: labID}
	specs := map[string]HostSpec{PairDNSHost: pairDNSSpec()}
	for _, n := range pairNodes {
		specs[n.host] = pairHostSpec(n)
	}
	for _, c := range res.Items {
		if c.Labels[LabelLab] != labID {
			continue
		}
		name := c.Labels[LabelHost]
		spec, ok := specs[name]
		if !ok {
			continue
		}
		cname := ""
		if len(c.Names) > 0 {
			cname = strings.TrimPrefix(c.Names[0], "/")
		}
		// The spec lets Start run the host's start commands and readiness
		// probe, as for a host of a lab this process brought up.
		h := &Host{Name: name, Env: PairEnv, Container: cname, ContainerID: c.ID, spec: spec, lab: l}
		switch name {
		case pairNodes[0].host:
			p.nodes[0] = h
		case pairNodes[1].host:
			p.nodes[1] = h
		default:
			p.dns = h
		}
	}
	if p.nodes[0] == nil || p.nodes[1] == nil || p.dns == nil {
		return nil, fmt.Errorf("%w: lab %s: %s is incomplete", ErrNoHost, labID, PairEnv)
	}
	if err := p.loadAddrs(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// loadAddrs reads the database hosts' fixed addresses from the resolver's
// host records, which Setup wrote: a host cut off the network has none to
// inspect, and Reconnect must give it its own back.
func (p *MariaDBPair) loadAddrs(ctx context.Context) error {
	res, err := p.dns.Exec(ctx, "cat", dnsConf)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("read the pair's addresses: %w", err)
	}
	for line := range strings.SplitSeq(res.Stdout, "\n") {
		rec, ok := strings.CutPrefix(strings.TrimSpace(line), "host-record=")
		if !ok {
			continue
		}
		name, ip, _ := strings.Cut(rec, ",")
		for i, n := range pairNodes {
			if n.dnsName == name {
				addr, err := netip.ParseAddr(ip)
				if err != nil {
					return fmt.Errorf("host record of %s: %w", n.host, err)
				}
				p.nodes[i].IP = addr
			}
		}
	}
	for _, h := range p.nodes {
		if !h.IP.IsValid() {
			return fmt.Errorf("%w: lab %s: no address recorded for %s", ErrNoHost, p.LabID, h.Name)
		}
	}
	return nil
}

// Nodes returns the two database hosts.
func (p *MariaDBPair) Nodes() []*Host { return []*Host{p.nodes[0], p.nodes[1]} }

// DNS returns the resolver host.
func (p *MariaDBPair) DNS() *Host { return p.dns }

// Other returns the database host that is not h.
func (p *MariaDBPair) Other(h *Host) *Host {
	if h.Name == p.nodes[0].Name {
		return p.nodes[1]
	}
	return p.nodes[0]
}

func nodeOf(name string) pairNode {
	for _, n := range pairNodes {
		if n.host == name {
			return n
		}
	}
	return pairNode{host: name}
}

// AZ returns the availability zone of a database host.
func (p *MariaDBPair) AZ(h *Host) string { return nodeOf(h.Name).az }

// Writer returns the host the endpoint's CNAME names: the primary as
// clients see it.
func (p *MariaDBPair) Writer(ctx context.Context) (*Host, error) {
	res, err := p.dns.Exec(ctx, "cat", dnsEndpointConf)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("read the endpoint's CNAME: %w", err)
	}
	for i, n := range pairNodes {
		if strings.Contains(res.Stdout, ","+n.dnsName+",") {
			return p.nodes[i], nil
		}
	}
	return nil, fmt.Errorf("endpoint CNAME names no host of the pair: %q", strings.TrimSpace(res.Stdout))
}

// Identity reports who h is. A host whose mariadbd does not serve
// reports Running false and no server id.
func (p *MariaDBPair) Identity(ctx context.Context, h *Host) (PairIdentity, error) {
	n := nodeOf(h.Name)
	id := PairIdentity{Host: h.Name, AZ: n.az, DNSName: n.dnsName}
	serving, err := p.Serving(ctx, h)
	if err != nil || !serving {
		return id, err
	}
	rows, err := p.SQL(ctx, h, "SELECT @@server_id, @@read_only")
	if err != nil {
		return id, err
	}
	if len(rows) != 1 || len(rows[0]) != 2 {
		return id, fmt.Errorf("host %s: unexpected identity answer %q", h.Name, rows)
	}
	id.Running = true
	id.ServerID, _ = strconv.Atoi(rows[0][0])
	id.ReadOnly = rows[0][1] == "1"
	return id, nil
}

// Serving reports whether h's mariadbd answers. Its host may run without
// it: the lab's RDS API service (ServicePair) shuts mariadbd down cleanly
// and leaves the host running, as it reboots an instance.
func (p *MariaDBPair) Serving(ctx context.Context, h *Host) (bool, error) {
	st, err := h.State(ctx)
	if err != nil || st != "running" {
		return false, err
	}
	if h.ops != nil {
		// State asked mariadbd already.
		return true, nil
	}
	res, err := h.Exec(ctx, mariadbPing...)
	return err == nil && res.ExitCode == 0, nil
}

// boot makes h serve: its host is started when it is down (its start
// commands start mariadbd), mariadbd alone when the host runs without it.
func (p *MariaDBPair) boot(ctx context.Context, h *Host) error {
	st, err := h.State(ctx)
	if err != nil {
		return err
	}
	if st != "running" {
		if err := h.Start(ctx); err != nil {
			return err
		}
		p.logf("%s booted", h.Name)
		return nil
	}
	serving, err := p.Serving(ctx, h)
	if err != nil || serving {
		return err
	}
	if err := h.startServices(ctx); err != nil {
		return err
	}
	p.logf("%s ran without mariadbd: started it", h.Name)
	return nil
}

// PairAPIBusyFile exists on db-dns while the lab's RDS API service runs
// an operation or what follows it (the old writer rejoining as the
// standby); its first line is the service's pid, the second the
// operation.
const PairAPIBusyFile = "/run/opsdrill-rdsapi.busy"

// WaitAPIIdle waits until the lab's RDS API service has no operation under
// way. The lab's own control plane (the lab failover driver, EnsureStandby)
// acts on the pair behind RDS's back, so it lets RDS finish first, as an
// operator waits for an instance's pending maintenance; a busy file left by
// a service that died does not count.
func (p *MariaDBPair) WaitAPIIdle(ctx context.Context) error {
	const script = `[ -f "$0" ] && kill -0 "$(head -n 1 "$0")" 2>/dev/null && tail -n +2 "$0"`
	deadline := time.Now().Add(6 * time.Minute)
	logged := false
	for {
		res, err := p.dns.Exec(ctx, "sh", "-c", script, PairAPIBusyFile)
		if err != nil {
			return fmt.Errorf("ask the lab's RDS API service whether it is busy: %w", err)
		}
		if res.ExitCode != 0 {
			return nil
		}
		what := strings.TrimSpace(res.Stdout)
		if !logged {
			p.begin()
			p.logf("waiting for the lab's RDS API to finish: %s", what)
			logged = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the lab's RDS API is still busy after 6m: %s", what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the lab's RDS API (%s): %w", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// SQL runs statements as root on h through the local socket and returns
// the rows of the last result, tab-separated fields split.
func (p *MariaDBPair) SQL(ctx context.Context, h *Host, stmts string) ([][]string, error) {
	res, err := h.ExecCommand(ctx, Command{Args: []string{"mariadb", "--batch", "--skip-column-names", "--raw"}, Stdin: []byte(stmts)})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	var rows [][]string
	for line := range strings.SplitSeq(strings.TrimRight(res.Stdout, "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows, nil
}

// status runs a SHOW statement on h and returns its first row by column.
func (p *MariaDBPair) status(ctx context.Context, h *Host, show string) (map[string]string, error) {
	res, err := h.ExecCommand(ctx, Command{Args: []string{"mariadb", "--batch", "--raw"}, Stdin: []byte(show)})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	lines := strings.Split(strings.TrimRight(res.Stdout, "\n"), "\n")
	out := map[string]string{}
	if len(lines) < 2 {
		return out, nil
	}
	cols, vals := strings.Split(lines[0], "\t"), strings.Split(lines[1], "\t")
	for i, c := range cols {
		if i < len(vals) {
			out[c] = vals[i]
		}
	}
	return out, nil
}

// globalStatus returns one SHOW GLOBAL STATUS value.
func (p *MariaDBPair) globalStatus(ctx context.Context, h *Host, name string) (string, error) {
	rows, err := p.SQL(ctx, h, "SHOW GLOBAL STATUS LIKE '"+name+"'")
	if err != nil {
		return "", err
	}
	if len(rows) != 1 || len(rows[0]) != 2 {
		return "", fmt.Errorf("host %s: no status %s", h.Name, name)
	}
	return rows[0][1], nil
}

// SetReplication switches both hosts to semi-sync or async replication,
// at once and for later restarts, and waits until the primary replicates
// in that mode.
func (p *MariaDBPair) SetReplication(ctx context.Context, mode string) error {
	if mode != SemiSync && mode != Async {
		return fmt.Errorf("replication mode %q: use %s or %s", mode, SemiSync, Async)
	}
	on := "OFF"
	if mode == SemiSync {
		on = "ON"
	}
	for _, h := range p.nodes {
		if serving, err := p.Serving(ctx, h); err != nil || !serving {
			continue
		}
		if err := writeFile(ctx, h, pairModeConf, pairModeConfText(mode), false); err != nil {
			return err
		}
		stmts := fmt.Sprintf("SET GLOBAL rpl_semi_sync_master_enabled = %s; SET GLOBAL rpl_semi_sync_slave_enabled = %s;", on, on)
		if _, err := p.SQL(ctx, h, stmts); err != nil {
			return err
		}
		// A replica negotiates semi-sync when its I/O thread connects.
		st, err := p.status(ctx, h, "SHOW SLAVE STATUS")
		if err != nil {
			return err
		}
		if st["Slave_IO_Running"] != "" {
			if _, err := p.SQL(ctx, h, "STOP SLAVE IO_THREAD; START SLAVE IO_THREAD;"); err != nil {
				return err
			}
		}
	}
	return p.WaitReplicating(ctx)
}

// Replication returns the mode the writer replicates in.
func (p *MariaDBPair) Replication(ctx context.Context) (string, error) {
	w, err := p.Writer(ctx)
	if err != nil {
		return "", err
	}
	rows, err := p.SQL(ctx, w, "SELECT @@rpl_semi_sync_master_enabled")
	if err != nil {
		return "", err
	}
	if len(rows) == 1 && len(rows[0]) == 1 && rows[0][0] == "1" {
		return SemiSync, nil
	}
	return Async, nil
}

// WaitReplicating waits until the standby runs, replicates from the writer
// and has caught up, and in semi-sync mode until the writer waits for its
// acknowledgements.
func (p *MariaDBPair) WaitReplicating(ctx context.Context) error {
	w, err := p.Writer(ctx)
	if err != nil {
		return err
	}
	s := p.Other(w)
	mode, err := p.Replication(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for {
		last, err = p.replicationLag(ctx, w, s, mode)
		if err == nil && last == "" {
			return nil
		}
		if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not replicate from %s: %s", s.Name, w.Name, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to replicate from %s: %w", s.Name, w.Name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// replicationLag returns "" when s is a caught-up replica of w (acking
// semi-sync when mode says so), else what is missing.
func (p *MariaDBPair) replicationLag(ctx context.Context, w, s *Host, mode string) (string, error) {
	st, err := p.status(ctx, s, "SHOW SLAVE STATUS")
	if err != nil {
		return "", err
	}
	if st["Slave_IO_Running"] != "Yes" || st["Slave_SQL_Running"] != "Yes" {
		return fmt.Sprintf("replication threads IO=%q SQL=%q, last error %q %q", st["Slave_IO_Running"], st["Slave_SQL_Running"], st["Last_IO_Error"], st["Last_SQL_Error"]), nil
	}
	rows, err := p.SQL(ctx, w, "SELECT @@gtid_binlog_pos")
	if err != nil {
		return "", err
	}
	pos := ""
	if len(rows) == 1 && len(rows[0]) == 1 {
		pos = rows[0][0]
	}
	rows, err = p.SQL(ctx, s, "SELECT @@gtid_current_pos")
	if err != nil {
		return "", err
	}
	have := ""
	if len(rows) == 1 && len(rows[0]) == 1 {
		have = rows[0][0]
	}
	if !gtidCovers(have, pos) {
		return fmt.Sprintf("standby is at %q, writer at %q", have, pos), nil
	}
	if mode == SemiSync {
		on, err := p.globalStatus(ctx, w, "Rpl_semi_sync_master_status")
		if err != nil {
			return "", err
		}
		if on != "ON" {
			return "semi-sync is not active on " + w.Name, nil
		}
	}
	return "", nil
}

// replicate makes s a read-only replica of primary. gtidMode is
// MASTER_USE_GTID: slave_pos for a fresh or rebuilt replica, current_pos
// for a former primary rejoining.
func (p *MariaDBPair) replicate(ctx context.Context, s, primary *Host, gtidMode string) error {
	res, err := s.Exec(ctx, "cat", pairReplPassFile)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("replication password on %s: %w", s.Name, err)
	}
	stmts := fmt.Sprintf(`SET GLOBAL read_only = ON;
STOP SLAVE;
CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='repl', MASTER_PASSWORD='%s',
  MASTER_USE_GTID=%s, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1, %s;
START SLAVE;`, primary.Name, PairPort, strings.TrimSpace(res.Stdout), gtidMode, pairReplicationTLS)
	if _, err := p.SQL(ctx, s, stmts); err != nil {
		return fmt.Errorf("make %s a replica of %s: %w", s.Name, primary.Name, err)
	}
	return nil
}

// PointEndpoint makes the endpoint's CNAME name h and restarts the
// resolver so it answers with it.
func (p *MariaDBPair) PointEndpoint(ctx context.Context, h *Host) error {
	n := nodeOf(h.Name)
	line := fmt.Sprintf("cname=%s,%s,%d\n", PairEndpoint, n.dnsName, endpointTTL)
	if err := writeFile(ctx, p.dns, dnsEndpointConf, line, false); err != nil {
		return err
	}
	res, err := p.dns.Exec(ctx, dnsRestart)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("restart the resolver: %w", err)
	}
	return nil
}

// writerAndStandby returns the writer and the standby that is to take over
// from it (Partition, Switchover); an error, with the writer when it was
// found, when there is no writer or the standby is not running.
func (p *MariaDBPair) writerAndStandby(ctx context.Context) (writer, standby *Host, err error) {
	writer, err = p.Writer(ctx)
	if err != nil {
		return nil, nil, err
	}
	standby = p.Other(writer)
	if serving, err := p.Serving(ctx, standby); err != nil || !serving {
		return writer, nil, fmt.Errorf("no standby to fail over to: %s does not serve", standby.Name)
	}
	return writer, standby, nil
}

// takeOver ends every failover and switchover: it promotes the new writer
// and points the endpoint at it, logging each step. It returns the old and
// the new writer the way FailOver does (the new one is nil when it could not
// be promoted).
func (p *MariaDBPair) takeOver(ctx context.Context, old, promoted *Host) (*Host, *Host, error) {
	if err := p.Promote(ctx, promoted); err != nil {
		return old, nil, err
	}
	p.logf("%s promoted", promoted.Name)
	if err := p.PointEndpoint(ctx, promoted); err != nil {
		return old, promoted, err
	}
	p.logf("endpoint points at %s", promoted.Name)
	return old, promoted, nil
}

// Promote makes h, a replica of a primary that may be dead, the primary:
// it stops receiving, applies everything it has received (a transaction
// acknowledged under semi-sync is in its relay log), forgets its primary
// and becomes writable. It does not touch the endpoint.
func (p *MariaDBPair) Promote(ctx context.Context, h *Host) error {
	if _, err := p.SQL(ctx, h, "STOP SLAVE IO_THREAD"); err != nil {
		return fmt.Errorf("promote %s: %w", h.Name, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := p.status(ctx, h, "SHOW SLAVE STATUS")
		if err != nil {
			return fmt.Errorf("promote %s: %w", h.Name, err)
		}
		if st["Slave_SQL_Running"] != "Yes" && st["Last_SQL_Error"] != "" {
			return fmt.Errorf("promote %s: its replication stopped on an error: %s", h.Name, st["Last_SQL_Error"])
		}
		if len(st) == 0 || strings.Contains(st["Slave_SQL_Running_State"], "read all relay log") ||
			st["Slave_SQL_Running"] != "Yes" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("promote %s: relay log not applied after 2m (state %q)", h.Name, st["Slave_SQL_Running_State"])
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("promote %s: %w", h.Name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, err := p.SQL(ctx, h, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF;"); err != nil {
		return fmt.Errorf("promote %s: %w", h.Name, err)
	}
	return nil
}

// KillWriter cuts the writer's power: SIGKILL to the whole host. It
// returns the host killed.
func (p *MariaDBPair) KillWriter(ctx context.Context) (*Host, error) {
	w, err := p.Writer(ctx)
	if err != nil {
		return nil, err
	}
	return w, w.Kill(ctx)
}

// FailOver is the abrupt failover the runbook wished for: SIGKILL the
// writer, promote the standby, point the endpoint at it. The old writer
// stays down (see Rebuild). It returns the old and the new writer.
func (p *MariaDBPair) FailOver(ctx context.Context) (old, promoted *Host, err error) {
	p.begin()
	old, err = p.KillWriter(ctx)
	if err != nil {
		return nil, nil, err
	}
	p.fault(old.Name + " killed")
	promoted = p.Other(old)
	return p.takeOver(ctx, old, promoted)
}

// Partition cuts the writer off the lab network (it keeps running, as a
// primary on the wrong side of a network failure does), promotes the
// standby after it applied what it received, and points the endpoint at
// it. With fence, the lab's control plane (docker exec needs no network)
// first demotes the cut-off writer to read-only, as RDS's own agent fences
// a failed primary; without, the old writer stays writable: the split
// brain a drill must catch once the partition heals. The old writer stays
// cut off until Heal.
func (p *MariaDBPair) Partition(ctx context.Context, fence bool) (old, promoted *Host, err error) {
	p.begin()
	old, promoted, err = p.writerAndStandby(ctx)
	if err != nil {
		return old, nil, err
	}
	if err := old.Disconnect(ctx); err != nil {
		return old, nil, err
	}
	p.fault(old.Name + " cut off the network")
	if fence {
		// Commits waiting for the standby's semi-sync acknowledgement would
		// hold read_only back for rpl_semi_sync_master_timeout; turning
		// semi-sync off releases them (their clients are cut off too: to
		// them the outcome is unknown).
		if _, err := p.SQL(ctx, old, "SET GLOBAL rpl_semi_sync_master_enabled = OFF; SET GLOBAL read_only = ON;"); err != nil {
			return old, nil, fmt.Errorf("fence %s: %w", old.Name, err)
		}
		p.logf("%s fenced: read-only", old.Name)
	}
	return p.takeOver(ctx, old, promoted)
}

// Heal attaches a host cut off by Partition to the lab network again.
func (p *MariaDBPair) Heal(ctx context.Context, h *Host) error {
	on, err := h.Connected(ctx)
	if err != nil || on {
		return err
	}
	if err := h.Reconnect(ctx); err != nil {
		return err
	}
	// Healed means reachable: neighbours may still hold the old link
	// address for a moment.
	addr := h.Addr(PairPort)
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("heal %s: reconnected but %s does not answer: %w", h.Name, addr, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("heal %s: %w", h.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	p.logf("%s reconnected and reachable", h.Name)
	return nil
}

// EnsureStandby makes the pair whole after any fault: once the lab's RDS
// API service is idle (WaitAPIIdle), the host that is not the writer is
// reconnected when cut off and, unless it serves as a replica of the
// writer without a replication error, rebuilt as its standby (booted
// first when its host or only its mariadbd is down). A replica whose I/O thread was merely
// stopped (a lagging standby, a fault some drills inject on purpose) is
// left as it is.
func (p *MariaDBPair) EnsureStandby(ctx context.Context) error {
	if err := p.WaitAPIIdle(ctx); err != nil {
		return err
	}
	w, err := p.Writer(ctx)
	if err != nil {
		return err
	}
	s := p.Other(w)
	if err := p.Heal(ctx, s); err != nil {
		return err
	}
	mode, err := p.Replication(ctx)
	if err != nil {
		return err
	}
	if serving, err := p.Serving(ctx, s); err == nil && serving {
		rs, err := p.status(ctx, s, "SHOW SLAVE STATUS")
		if err == nil && rs["Master_Host"] == w.Name && rs["Slave_SQL_Running"] == "Yes" && rs["Last_IO_Error"] == "" {
			return nil
		}
	}
	if err := p.Rebuild(ctx, s); err != nil {
		return err
	}
	// A fenced writer had semi-sync switched off: the mode holds for both.
	rows, err := p.SQL(ctx, s, "SELECT @@rpl_semi_sync_master_enabled, @@rpl_semi_sync_slave_enabled")
	if err != nil {
		return err
	}
	want := "0"
	if mode == SemiSync {
		want = "1"
	}
	if len(rows) == 1 && len(rows[0]) == 2 && rows[0][0] == want && rows[0][1] == want {
		return nil
	}
	return p.SetReplication(ctx, mode)
}

// Switchover is what RDS does on a reboot with failover: the writer stops
// taking writes, the standby catches up with it, the writer shuts down
// cleanly, the standby is promoted and the endpoint repointed. Nothing
// acknowledged is lost. The old writer stays down until Rejoin.
func (p *MariaDBPair) Switchover(ctx context.Context) (old, promoted *Host, err error) {
	p.begin()
	old, promoted, err = p.writerAndStandby(ctx)
	if err != nil {
		return old, nil, err
	}
	// read_only waits for running commits; later writes get error 1290.
	rows, err := p.SQL(ctx, old, "SET GLOBAL read_only = ON; SELECT @@gtid_binlog_pos;")
	if err != nil {
		return old, nil, err
	}
	pos := ""
	if len(rows) == 1 && len(rows[0]) == 1 {
		pos = rows[0][0]
	}
	if err := p.waitCaughtUp(ctx, promoted, pos, 2*time.Minute); err != nil {
		return old, nil, fmt.Errorf("standby %s did not catch up with %s (at %s): %w", promoted.Name, old.Name, pos, err)
	}
	p.logf("%s is read-only at %s; %s has caught up", old.Name, pos, promoted.Name)
	if err := old.Stop(ctx, 30*time.Second); err != nil {
		return old, nil, err
	}
	p.logf("%s shut down", old.Name)
	return p.takeOver(ctx, old, promoted)
}

// waitCaughtUp waits until h's GTID position covers pos. Not
// MASTER_GTID_WAIT: it watches only what replication applied
// (gtid_slave_pos), so a standby that wrote pos itself, as the writer
// before the last switchover, would never be caught up.
func (p *MariaDBPair) waitCaughtUp(ctx context.Context, h *Host, pos string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		rows, err := p.SQL(ctx, h, "SELECT @@gtid_current_pos")
		if err != nil {
			return err
		}
		have := ""
		if len(rows) == 1 && len(rows[0]) == 1 {
			have = rows[0][0]
		}
		if gtidCovers(have, pos) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("at %q after %s", have, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Rejoin boots a former writer that shut down cleanly (after Switchover;
// its host, or only its mariadbd when the host kept running) and makes it
// the standby of the current writer.
func (p *MariaDBPair) Rejoin(ctx context.Context, old *Host) error {
	p.begin()
	w, err := p.Writer(ctx)
	if err != nil {
		return err
	}
	if w.Name == old.Name {
		return fmt.Errorf("rejoin %s: it is the writer", old.Name)
	}
	if err := p.boot(ctx, old); err != nil {
		return err
	}
	if err := p.replicate(ctx, old, w, "current_pos"); err != nil {
		return err
	}
	if err := p.WaitReplicating(ctx); err != nil {
		return err
	}
	p.logf("%s replicates from %s", old.Name, w.Name)
	return nil
}

// Reboot restarts the writer without failover (RDS reboot without
// ForceFailover): clean shutdown, boot, writable again.
func (p *MariaDBPair) Reboot(ctx context.Context) error {
	w, err := p.Writer(ctx)
	if err != nil {
		return err
	}
	if err := w.Stop(ctx, 30*time.Second); err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	if _, err := p.SQL(ctx, w, "SET GLOBAL read_only = OFF"); err != nil {
		return err
	}
	return p.WaitReplicating(ctx)
}

// Rebuild makes h a fresh standby of the current writer after an abrupt
// failover: it boots h if it is down (or runs without mariadbd), replaces its drill schema with a
// consistent copy of the writer's (whatever h had and the writer never got
// is discarded, as RDS discards a failed primary), and replicates from the
// copy's position.
func (p *MariaDBPair) Rebuild(ctx context.Context, h *Host) error {
	p.begin()
	w, err := p.Writer(ctx)
	if err != nil {
		return err
	}
	if w.Name == h.Name {
		return fmt.Errorf("rebuild %s: it is the writer", h.Name)
	}
	if err := p.boot(ctx, h); err != nil {
		return err
	}
	dump, err := w.Exec(ctx, "mariadb-dump", "--single-transaction", "--gtid", "--master-data=1", "--databases", PairDatabase)
	if err == nil {
		err = dump.Err()
	}
	if err != nil {
		return fmt.Errorf("rebuild %s: dump %s: %w", h.Name, w.Name, err)
	}
	if _, err := p.SQL(ctx, h, "SET GLOBAL read_only = ON; STOP SLAVE; RESET SLAVE ALL; RESET MASTER; DROP DATABASE IF EXISTS "+PairDatabase+";"); err != nil {
		return fmt.Errorf("rebuild %s: %w", h.Name, err)
	}
	// The dump sets gtid_slave_pos to the writer's position at the copy.
	// Loaded outside the binary log: h's own log restarts empty, so the
	// writer's transactions it replicates next are the first it logs.
	load, err := h.ExecCommand(ctx, Command{Args: []string{"mariadb", "--init-command=SET sql_log_bin=0"}, Stdin: []byte(dump.Stdout)})
	if err == nil {
		err = load.Err()
	}
	if err != nil {
		return fmt.Errorf("rebuild %s: load the copy: %w", h.Name, err)
	}
	if err := p.replicate(ctx, h, w, "slave_pos"); err != nil {
		return err
	}
	if err := p.WaitReplicating(ctx); err != nil {
		return err
	}
	p.logf("%s rebuilt from %s and replicating", h.Name, w.Name)
	return nil
}

// writeFile replaces a file in h atomically.
func writeFile(ctx context.Context, h *Host, path, content string, private bool) error {
	script := `umask 022; cat > "$0.tmp" && mv "$0.tmp" "$0"`
	if private {
		script = `umask 077; cat > "$0.tmp" && mv "$0.tmp" "$0"`
	}
	res, err := h.ExecCommand(ctx, Command{Args: []string{"sh", "-c", script, path}, Stdin: []byte(content)})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("host %s: write %s: %w", h.Name, path, err)
	}
	return nil
}

// gtidCovers reports whether GTID position have includes want: in every
// replication domain of want, have is at the same or a later sequence
// number.
func gtidCovers(have, want string) bool {
	seqs := func(pos string) map[string]uint64 {
		m := map[string]uint64{}
		for g := range strings.SplitSeq(pos, ",") {
			parts := strings.Split(strings.TrimSpace(g), "-")
			if len(parts) != 3 {
				continue
			}
			n, err := strconv.ParseUint(parts[2], 10, 64)
			if err == nil {
				m[parts[0]] = n
			}
		}
		return m
	}
	h := seqs(have)
	for d, n := range seqs(want) {
		if h[d] < n {
			return false
		}
	}
	return true
}
