// Package all imports every step family, registering them all. Programs
// that run scenarios import it for its side effect.
package all

import (
	_ "github.com/opsdrill/opsdrill/steps/aws"
	_ "github.com/opsdrill/opsdrill/steps/command"
	_ "github.com/opsdrill/opsdrill/steps/db"
	_ "github.com/opsdrill/opsdrill/steps/dbsec"
	_ "github.com/opsdrill/opsdrill/steps/dns"
	_ "github.com/opsdrill/opsdrill/steps/flow"
	_ "github.com/opsdrill/opsdrill/steps/httpcheck"
	_ "github.com/opsdrill/opsdrill/steps/ping"
	_ "github.com/opsdrill/opsdrill/steps/port"
	_ "github.com/opsdrill/opsdrill/steps/scanner"
	_ "github.com/opsdrill/opsdrill/steps/sshd"
	_ "github.com/opsdrill/opsdrill/steps/sshfwd"
	_ "github.com/opsdrill/opsdrill/steps/tcp"
	_ "github.com/opsdrill/opsdrill/steps/totp"
	_ "github.com/opsdrill/opsdrill/steps/vpn"
)
