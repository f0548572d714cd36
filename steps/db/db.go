// Package db provides the database failover drill of the runbook "Amazon
// RDS Multi-AZ Setup Failover Simulation", with Jepsen's discipline:
//
//   - db.flood runs the runbook's writers (its "cycles"): each inserts rows
//     with its own strictly increasing counter into the runbook's
//     failover_test table, through the endpoint (resolved at every
//     connection) or pinned to the primary's address, and records every
//     write as invoke followed by ok, fail or unknown in an op log.
//   - db.failover forces the failover: RebootDBInstance with ForceFailover
//     or FailoverDBCluster on RDS (aws-sdk-go-v2; the lab serves the same
//     API), an abrupt SIGKILL of the lab's primary, or any command; it
//     fails when the writer did not change.
//   - db.verify reads the op log and the new primary and decides, per
//     write, whether an acknowledged write was lost, and how long writes
//     were refused.
//
// The steps talk to MySQL and MariaDB with github.com/go-sql-driver/mysql.
// Passwords only travel inside the DSN; they are marked secret as soon as
// a step runs and never appear in messages.
package db

import (
	"github.com/opsdrill/opsdrill/steps"
)

func init() {
	steps.Register(steps.Spec{
		Name:    "db.flood",
		Summary: "Write counters from N writers and record every write (invoke/ok/fail/unknown) in an op log",
		Doc: "Before the first write it checks that the DSN's server is reachable with these credentials and writable, " +
			"that `table` has the runbook's schema (id, cycle, counter, failover_date; created when absent) and that the user may insert and select; " +
			"any problem is an error naming the parameter, and nothing is written. " +
			"Then `writers` writers insert `cycle = RUN-cycleN, counter = 1, 2, 3, ...` until `duration` passes or each made `count` writes. " +
			"A run tag that already has rows in the table is refused. " +
			"Every write is recorded in the op log (artifact oplog.jsonl) as invoke and then ok (acknowledged, with the row id), fail (certainly not done) or " +
			"unknown (sent, then the connection died or timed out, or the server answered with an error that can follow a commit: " +
			"ER_SERVER_SHUTDOWN 1053, ER_QUERY_INTERRUPTED 1317, ER_CONNECTION_KILLED 1927), with microsecond monotonic timestamps, streamed to disk; " +
			"every server address the writers connect to is logged too. " +
			"After an error a writer reconnects with exponential backoff (backoff_min to backoff_max); every connection resolves the host again " +
			"through `resolver`, so writers follow the endpoint's CNAME; `pin` writes to the first address only. " +
			"Run it with `background: true` and join it with `wait` before db.verify.",
		New: newFlood,
		Outputs: []steps.Output{
			{Name: "oplog", Type: "string", Doc: "absolute path of the op log, for db.verify"},
			{Name: "run", Type: "string", Doc: "the run tag; rows of this flood have cycle RUN-cycleN"},
			{Name: "cycles", Type: "list", Doc: "the writers' cycle names"},
			{Name: "table", Type: "string", Doc: "the table written"},
			{Name: "target", Type: "string", Doc: "where the writers wrote: the DSN's host:port, or the pinned address"},
			{Name: "writers", Type: "map", Doc: "per cycle: attempted, acknowledged, last_acked (the counter the runbook printed last), errors, failed, unknown"},
			{Name: "attempted", Type: "int", Doc: "writes attempted"},
			{Name: "acknowledged", Type: "int", Doc: "writes the server acknowledged"},
			{Name: "failed", Type: "int", Doc: "writes that certainly did not happen"},
			{Name: "unknown", Type: "int", Doc: "writes whose outcome the client cannot know"},
			{Name: "errors", Type: "int", Doc: "failed + unknown"},
			{Name: "duration_ms", Type: "int", Doc: "how long the flood ran"},
			{Name: "writes_per_second", Type: "float", Doc: "acknowledged writes per second"},
		},
		Figures: floodFigures,
		Examples: []steps.Example{
			{Title: "The runbook's test case 2: five writers straight at the primary", YAML: "- id: load\n  uses: db.flood\n  background: true\n  with:\n    dsn: \"admin:${{ secrets.db_password }}@tcp(${{ vars.endpoint }}:3306)/drill\"\n    writers: 5\n    pin: true\n    duration: 90s"},
			{Title: "The runbook's test case 1: one insert at a time through the endpoint, a new connection each", YAML: "- id: probe\n  uses: db.flood\n  background: true\n  with:\n    dsn: \"admin:${{ secrets.db_password }}@tcp(${{ vars.endpoint }}:3306)/drill\"\n    writers: 1\n    connect_per_write: true\n    interval: 10ms\n    duration: 90s"},
		},
	})
	steps.Register(steps.Spec{
		Name:    "db.failover",
		Summary: "Force a database failover (RDS reboot with failover, cluster failover, lab power cut, or a script) and check the writer changed",
		Doc: "Records the writer before (the platform's view: zone, cluster writer or lab host; and with `dsn`, the server's @@hostname and @@server_id " +
			"read through the endpoint), notes the trigger on the scenario's timeline, then triggers the failover with the chosen driver. " +
			"aws-rds: RebootDBInstance with ForceFailover for a Multi-AZ `instance` (the runbook's \"Reboot With Failover\"), or FailoverDBCluster " +
			"for a Multi-AZ DB `cluster`, through aws-sdk-go-v2: credentials `access_key_id` with `secret_access_key` (a secret), else `profile`, else the SDK's default chain; " +
			"`endpoint_url` replaces AWS's endpoint, e.g. with the lab's RDS API service (vars rds_api_endpoint, rds_api_access_key_id, " +
			"secrets rds_api_secret_access_key), so one scenario runs against AWS and the lab. It then polls DescribeDBInstances/DescribeDBClusters every `poll`; " +
			"after the new writer serves it waits (up to `az_wait`, default 10m) for the instance's AvailabilityZone and SecondaryAvailabilityZone " +
			"to show the swap, which AWS reports late, and fails if they never do; RDS's own events (DescribeEvents) go in the evidence beside the drill's timeline. " +
			"lab: SIGKILL the lab writer's host (the abrupt failure the runbook wished for), promote the standby after it applied what it received, " +
			"repoint the endpoint's CNAME; the killed host is rebuilt as the standby when the scenario ends. `action: partition` cuts the writer off the " +
			"network instead (it keeps running; `fence` makes the lab's control plane demote it, as RDS does; the partition heals after `partition_for`, " +
			"so db.verify can check it for split brain), and `action: switchover` does the graceful reboot with failover. A standby left behind by an " +
			"earlier fault is rebuilt before the next one. Against AWS, where no API crashes an instance, run an AWS FIS experiment with driver command. " +
			"command: run `command` (no shell); the writer is read from the database. " +
			"The step completes when the platform is settled and a different writer serves (writable, with `dsn`); it fails when, after " +
			"`complete_within`, the writer is still the same one.",
		New: newFailover,
		Outputs: []steps.Output{
			{Name: "triggered_at", Type: "string", Doc: "RFC 3339 instant the failover was triggered"},
			{Name: "completed_at", Type: "string", Doc: "RFC 3339 instant a new writer was seen serving"},
			{Name: "duration_ms", Type: "int", Doc: "trigger to completion"},
			{Name: "switched", Type: "bool", Doc: "the writer changed"},
			{Name: "writer_before", Type: "map", Doc: "host, az, secondary_az, hostname, server_id, status before"},
			{Name: "writer_after", Type: "map", Doc: "the same after"},
			{Name: "az_before", Type: "string", Doc: "availability zone of the writer before"},
			{Name: "az_after", Type: "string", Doc: "availability zone of the writer after"},
			{Name: "secondary_az_before", Type: "string", Doc: "the standby's zone before (Multi-AZ instance)"},
			{Name: "secondary_az_after", Type: "string", Doc: "the standby's zone after"},
			{Name: "az_lag_ms", Type: "int", Doc: "aws-rds instance: how long after the new writer served the platform showed the zones swapped (-1: not within az_wait)"},
			{Name: "platform_events", Type: "list", Doc: "aws-rds: RDS's own events for the instance (DescribeEvents, source type db-instance) from a minute before the trigger: at, message, categories"},
		},
		Figures: failoverFigures,
		Examples: []steps.Example{
			{Title: "Reboot with failover, on AWS", YAML: "- id: failover\n  uses: db.failover\n  with:\n    driver: aws-rds\n    instance: testrds\n    region: ap-south-1\n    dsn: \"admin:${{ secrets.db_password }}@tcp(${{ vars.endpoint }}:3306)/drill\"\n  expect:\n    - outputs.az_after != outputs.az_before"},
			{Title: "Reboot with failover through the lab's RDS API", YAML: "- uses: db.failover\n  with:\n    driver: aws-rds\n    instance: ${{ vars.rds_instance }}\n    region: ${{ vars.rds_region }}\n    endpoint_url: ${{ vars.rds_api_endpoint }}\n    access_key_id: ${{ vars.rds_api_access_key_id }}\n    secret_access_key: ${{ secrets.rds_api_secret_access_key }}"},
			{Title: "Pull the plug on the lab's primary", YAML: "- uses: db.failover\n  with: { driver: lab, action: kill }"},
		},
	})
	steps.Register(steps.Spec{
		Name:    "db.verify",
		Summary: "Judge a flood's op log against the new primary: lost, recovered, unexpected, duplicate writes and write downtime",
		Doc: "Reads the op log and every row of the flood's run from the DSN's server (the new primary: it refuses a read-only server " +
			"(read_only, super_read_only, or an Aurora reader's innodb_read_only) unless `allow_replica`). Rows are matched to writes by cycle, " +
			"counter and the row id the server acknowledged, so a leftover row cannot stand in for a lost write. " +
			"The history must contain the fault: a failover moment of the scenario's timeline (db.failover's trigger or completion, a lab kill " +
			"or partition) must fall inside the flood, with acknowledged writes on both sides (a pinned flood: writes still attempted after it); " +
			"otherwise the step fails (\"the failover happened outside the load (flood ended 6.1 s before the trigger)\"), also without any " +
			"failover unless `require_failover: false`. The server read must be the new writer db.failover saw; and every server known from the " +
			"op log and the failover (old and new writer) is asked whether it takes writes: two writable servers are a split_brain failure naming both. " +
			"Per write: lost = acknowledged but missing (the verdict), recovered = outcome unknown but present, " +
			"unexpected = present but never attempted, duplicates = more than one row, failed_present = present although the server refused it. " +
			"Per cycle it also gives the runbook's comparison: the last acknowledged counter (max_acked) against max(counter) in the database (max_in_db). " +
			"write_downtime_ms is the longest gap between two acknowledged writes across all writers that ends after the failover's trigger (µs precision), " +
			"with its start and end; writes_resumed only when acknowledged writes follow it. " +
			"Evidence: the verdict in words (headline), the writers table (the runbook's check), the servers and whether each takes writes, " +
			"a per-second timeline of acknowledged and failed writes with the failover and DNS switch marked " +
			"(moments noted on the scenario's timeline), and the lost counters. The step also fails when a write was lost, unexpected, duplicated or " +
			"present although refused, unless `report_only` (which never excuses a fault outside the load, the wrong server or split brain).",
		New: newVerify,
		Outputs: []steps.Output{
			{Name: "lost", Type: "int", Doc: "acknowledged writes missing from the database"},
			{Name: "recovered", Type: "int", Doc: "writes with an unknown outcome found in the database"},
			{Name: "unknown_absent", Type: "int", Doc: "writes with an unknown outcome not in the database"},
			{Name: "unexpected", Type: "int", Doc: "rows of the run that no writer attempted"},
			{Name: "duplicates", Type: "int", Doc: "extra rows for one write"},
			{Name: "failed_present", Type: "int", Doc: "rows of writes the server had refused"},
			{Name: "attempted", Type: "int", Doc: "writes in the op log"},
			{Name: "acknowledged", Type: "int", Doc: "acknowledged writes in the op log"},
			{Name: "failed", Type: "int", Doc: "failed writes in the op log"},
			{Name: "unknown", Type: "int", Doc: "writes with an unknown outcome in the op log"},
			{Name: "writers", Type: "map", Doc: "per cycle: the counts above, max_acked, max_in_db and the first lost counters"},
			{Name: "max_acked", Type: "map", Doc: "per cycle: the highest acknowledged counter (what the runbook saw printed last)"},
			{Name: "max_in_db", Type: "map", Doc: "per cycle: select max(counter) ... where cycle = ... on the new primary"},
			{Name: "write_downtime_ms", Type: "float", Doc: "longest gap between acknowledged writes across writers"},
			{Name: "downtime_start", Type: "string", Doc: "RFC 3339 instant of the last acknowledged write before the gap"},
			{Name: "downtime_end", Type: "string", Doc: "RFC 3339 instant of the first acknowledged write after it (or of the last error, when writes never resumed)"},
			{Name: "downtime_start_s", Type: "float", Doc: "the gap's start in seconds since the flood started"},
			{Name: "downtime_end_s", Type: "float", Doc: "the gap's end in seconds since the flood started"},
			{Name: "writes_resumed", Type: "bool", Doc: "writes were acknowledged again after the gap"},
			{Name: "resumed_note", Type: "string", Doc: "why writes not resuming is expected (a flood pinned to the old primary's address), else empty"},
			{Name: "oplog_complete", Type: "bool", Doc: "the op log ends with its end line (false: the flood was killed)"},
			{Name: "verified_on", Type: "map", Doc: "hostname, server_id, read_only and address of the server read"},
			{Name: "verified_new_writer", Type: "bool", Doc: "the server read is the new writer db.failover saw"},
			{Name: "fault_in_load", Type: "bool", Doc: "a failover moment falls inside the flood's history, acknowledged writes on both sides"},
			{Name: "fault", Type: "string", Doc: "the moment that did (or the nearest one), as the timeline labels it"},
			{Name: "fault_reason", Type: "string", Doc: "why the failover did not meet the load, e.g. \"flood ended 6.1 s before the trigger\"; empty when it did"},
			{Name: "split_brain", Type: "bool", Doc: "more than one server took writes after the failover"},
			{Name: "writable_servers", Type: "list", Doc: "the servers that take writes (hostname and server_id)"},
			{Name: "dns_switch_ms", Type: "float", Doc: "from the failover's trigger to the DNS switch dns.watch noted; -1 without one"},
			{Name: "headline", Type: "string", Doc: "the verdict in words: \"0 of 6,652 acknowledged writes lost; writes stopped 2.76 s; DNS moved 3.6 s after the trigger; no split brain\""},
		},
		Figures: verifyFigures,
		Examples: []steps.Example{
			{Title: "No acknowledged write lost, writes back within two minutes", YAML: "- uses: db.verify\n  with:\n    dsn: \"admin:${{ secrets.db_password }}@tcp(${{ vars.endpoint }}:3306)/drill\"\n    oplog: ${{ steps.load.outputs.oplog }}\n  expect:\n    - outputs.lost == 0\n    - outputs.write_downtime_ms < 120000"},
		},
	})
}
