package vpn

import "github.com/opsdrill/opsdrill/steps"

// upFigures are tunnel.up's key figures, as the report's findings phrase them.
var upFigures = []steps.Figure{
	{Output: "establish_ms", Text: "tunnel {connection} up in {value}", Unit: "ms", Seconds: true},
	{Output: "installed", Text: "{value} CHILD_SAs installed, IKE {ike_proposal}, ESP {esp_proposal}"},
}

// downFigures are tunnel.down's key figures, as the report's findings phrase them.
var downFigures = []steps.Figure{
	{Output: "terminated", Text: "tunnel terminated", TextFalse: "no tunnel was up to terminate"},
}

// configFigures are vpn.config's key figures, as the report's findings phrase them.
var configFigures = []steps.Figure{
	{Output: "ike_proposal", Text: "agreed parameters: IKEv{ike_version} {value}, ESP {esp_proposal}, {routing} routing"},
}
