package ping

import "github.com/opsdrill/opsdrill/steps"

// pingFigures are net.ping's key figures, as the report's findings phrase them.
var pingFigures = []steps.Figure{
	{Output: "loss_pct", Text: "{with.address}: {received} of {sent} echo requests answered, {value} loss", Unit: "%"},
	{Output: "rtt_avg_ms", Text: "RTT {value}", Unit: "ms", When: "received"},
	{Output: "longest_outage_ms", Text: "longest outage {value}", Unit: "ms", Seconds: true, When: "outages"},
}
