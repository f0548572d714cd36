package db

import "github.com/opsdrill/opsdrill/steps"

// floodFigures are db.flood's key figures, as the report's findings phrase them.
var floodFigures = []steps.Figure{
	{Output: "acknowledged", Text: "{value} of {attempted} writes acknowledged ({failed} failed, {unknown} outcome unknown)"},
	{Output: "writes_per_second", Text: "{value} acknowledged writes per second"},
}

// failoverFigures are db.failover's key figures, as the report's findings phrase them.
var failoverFigures = []steps.Figure{
	{Output: "switched", Text: "writer changed (zone {az_before|unknown} to {az_after|unknown})", TextFalse: "the writer did not change"},
	{Output: "duration_ms", Text: "failover completed {value} after the trigger", Unit: "ms", Seconds: true},
}

// verifyFigures are db.verify's key figures, as the report's findings phrase them.
var verifyFigures = []steps.Figure{
	{Output: "lost", Text: "{value} of {acknowledged} acknowledged writes lost"},
	{Output: "write_downtime_ms", Text: "writes stopped {value}", Unit: "ms", Seconds: true},
	{Output: "dns_switch_ms", Text: "DNS moved {value} after the trigger", Unit: "ms", Seconds: true},
	{Output: "split_brain", Text: "split brain: {writable_servers} took writes", TextFalse: "no split brain"},
	{Output: "fault_in_load", TextFalse: "the failover happened outside the load ({fault_reason|no failover seen})"},
	{Output: "verified_new_writer", TextFalse: "verified on a server that is not the new writer"},
	{Output: "writes_resumed", TextFalse: "writes never resumed{resumed_note|}"},
	{Output: "unexpected", Text: "{value} rows no writer attempted", When: "unexpected"},
	{Output: "duplicates", Text: "{value} duplicate rows", When: "duplicates"},
	{Output: "failed_present", Text: "{value} refused writes present anyway", When: "failed_present"},
	{Output: "recovered", Text: "{value} writes of unknown outcome found committed", When: "recovered"},
	{Output: "oplog_complete", TextFalse: "the op log is incomplete (the flood was cut short)"},
}
