package scanner

import "github.com/opsdrill/opsdrill/steps"

// visibleFigures are scanner.visible's key figures, as the report's findings phrase them.
var visibleFigures = []steps.Figure{
	{Output: "usb_present", Text: "USB device {with.usb} present", TextFalse: "USB device {with.usb} absent"},
	{Output: "backend_configured", Text: "{with.backend} backend configured for it", TextFalse: "{with.backend} backend not configured for it"},
	// A listing that only SANE's test backend answered proves nothing of
	// the scanner: the findings say so instead of "does not list it".
	{Output: "visible", Text: "scanimage lists the scanner", TextFalse: "scanimage does not list the scanner", When: "listing_exercised"},
	{Output: "listing_note", Text: "{=listing_note}", When: "listing_note"},
}
