package httpcheck

import "github.com/opsdrill/opsdrill/steps"

// requestFigures are http.request's key figures, as the report's findings phrase them.
var requestFigures = []steps.Figure{
	{Output: "status", Text: "{with.url}: HTTP {value}"},
}
