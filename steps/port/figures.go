package port

import "github.com/opsdrill/opsdrill/steps"

// openFigures are port.open's key figures, as the report's findings phrase them.
var openFigures = []steps.Figure{
	{Output: "opened", Text: "port {=port} opened for {ip|the caller}", TextFalse: "port {=port} refused: {reason|no reason given}"},
}

// expiryFigures are port.expiry's key figures, as the report's findings phrase them.
var expiryFigures = []steps.Figure{
	{Output: "closed_after_ms", Text: "closed {value} after the lease ended", TextNegative: "closed {value} before the lease ended", Unit: "ms", Seconds: true},
	{Output: "reopened_after_ms", When: "reopened", Text: "closed, then open again {value} after the lease ended: something re-opens it", TextNegative: "closed, then open again {value} before the lease ended: something re-opens it", Unit: "ms", Seconds: true},
	{Output: "closed", TextFalse: "still open after the lease ended"},
}

// closeFigures are port.close's key figures, as the report's findings phrase them.
var closeFigures = []steps.Figure{
	{Output: "closed", Text: "lease closed", TextFalse: "lease still open (HTTP {status})"},
}
