package command

import "github.com/opsdrill/opsdrill/steps"

// execFigures are exec's key figures, as the report's findings phrase them.
var execFigures = []steps.Figure{
	{Output: "exit_code", Text: "exit code {value}"},
}
