package tcp

import "github.com/opsdrill/opsdrill/steps"

// probeFigures are tcp.probe's key figures, as the report's findings phrase them.
var probeFigures = []steps.Figure{
	{Output: "open", Text: "{with.address} open from {with.host|this machine}", TextFalse: "{with.address} closed from {with.host|this machine} ({state})"},
}
