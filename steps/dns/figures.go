package dns

import "github.com/opsdrill/opsdrill/steps"

// watchFigures are dns.watch's key figures, as the report's findings phrase them.
var watchFigures = []steps.Figure{
	{Output: "switch_ms", Text: "DNS moved {value} after the trigger", Unit: "ms", Seconds: true},
	{Output: "changed", TextFalse: "DNS never changed"},
}
