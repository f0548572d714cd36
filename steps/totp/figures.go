package totp

import "github.com/opsdrill/opsdrill/steps"

// generateKeyFigures are totp.generate_key's key figures, as the report's findings phrase them.
var generateKeyFigures = []steps.Figure{
	{Output: "digits", Text: "key provisioned: {algorithm}, {value} digits, {period} s period"},
}

// verifyDriftFigures are totp.verify_drift's key figures, as the report's findings phrase them.
var verifyDriftFigures = []steps.Figure{
	{Output: "mismatches", Text: "{value} of {samples} codes differ from oathtool", When: "samples"},
	{Output: "matched", Text: "device code matched at {drift_steps} steps of drift", TextFalse: "device code did not match within the window"},
	{Output: "window_steps", Text: "validator accepts ±{value} steps, clock offset {clock_offset_steps} steps"},
	{Output: "replay_rejected", Text: "replayed code refused", TextFalse: "replayed code accepted"},
}
