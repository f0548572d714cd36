// Package scanner provides scanner.visible, the drill of the runbook "Use
// Epson L350 (or L300 / L200 Series Scanner) on Ubuntu 16.04/Linux Mint 18
// and above": the scanner is on the USB bus (lsusb's ID 04b8:08a1), the
// epkowa backend's config names it by vendor and product id, the other Epson
// backends are out of the way, and `scanimage -L` lists it.
//
// Each of these is a finding with its evidence; a failed finding carries the
// runbook's fix. The parsers of what the step reads live apart, each with a
// fuzz target: sysfs attributes (sysfs.go), SANE config files
// (saneconf.go), scanimage's device list (scanimage.go) and the file
// listing read from a lab host (snapshot.go). Where the files and scanimage
// are, this machine or a lab host, is a target (target.go).
package scanner
