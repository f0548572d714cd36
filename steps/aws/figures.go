package aws

import "github.com/opsdrill/opsdrill/steps"

// statusFigures are aws.vpn_status's key figures, as the report's findings phrase them.
var statusFigures = []steps.Figure{
	{Output: "up_count", Text: "AWS reports {value} of {tunnel_count} tunnels UP (connection {state})"},
}
