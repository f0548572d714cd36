package scanner

import "github.com/opsdrill/opsdrill/steps"

// visibleFigures are scanner.visible's key figures, as the report's findings phrase them.
var visibleFigures = []steps.Figure{
	{Output: "usb_present", Text: "USB device {with.usb} present", TextFalse: "USB device {with.usb} absent"},
	{Output: "backend_configured", Text: "{with.backend} backend configured for it", TextFalse: "{with.backend} backend not configured for it"},
	{Output: "visible", Text: "scanimage lists the scanner", TextFalse: "scanimage does not list the scanner"},
}
