// Package port provides port.open and port.close: ask an on-demand port
// opener to let the caller's address in, and close it again. The opener is
// portgate (its JSON API, with a TOTP code computed from the user's key when
// the step runs) or, with mode: form, a page in the shape of the seed
// runbook's openport.php (a password field, optionally an address field).
//
// The request is made from where `host:` says (this machine, or a lab host
// with lab:NAME), because the opener lets in the address it sees. Pair the
// steps with tcp.probe from the same and from another host:
//
//   - id: open
//     uses: port.open
//     with: {url: "https://gate:8443", user: drill, secret: "${{ secrets.totp }}", port: 22, host: lab:pgclient1}
//   - uses: tcp.probe
//     with: {address: "gate:22", host: lab:pgclient1}
//   - uses: tcp.probe
//     with: {address: "gate:22", host: lab:pgclient2, expect: closed}
//
// port.open registers port.close as an undo action, so a drill never leaves
// a port open behind it. Codes, keys, passwords and lease tokens are marked
// secret and never printed.
package port

import (
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

func init() {
	steps.Register(steps.Spec{
		Name:    "port.open",
		Summary: "Ask a port opener (portgate, or a password form) to open a port for the caller's address",
		Doc: "driver: fwknop sends a single packet authorization with the real fwknop client (Debian's fwknop-client) from `host`, " +
			"with the user's `key_file` (an fwknoprc; `stanza` picks one), for `port` (and `proto`) from the address the packet comes from " +
			"(-s), for `duration` (--fw-timeout) and as `user` (-U); fwknopd answers nothing, so the step then probes the port from " +
			"the same host for `open_wait`: opened means it became reachable. Its `code` output is the packet itself (secret): " +
			"give it back as `code` to replay it, sent as is over UDP. `wrong_credentials` signs a packet with random keys. " +
			"mode (or driver): portgate (default) POSTs {user, code, port[, ip][, duration]} to `url`/v1/leases; the TOTP code is computed " +
			"from `secret` (base32) or `secret_hex` with digits/period/algorithm when the step runs, `offset_steps` away from now " +
			"(a wrong code), or given verbatim in `code` (a replayed code). A code already sent by this run for the same user is " +
			"never recomputed into a replay: the step waits for the next time step. mode: form POSTs `password_field`=`password` " +
			"(and `ip_field`=`ip` when ip is set, plus `fields`) to `url`, as the seed's openport.php expects; the port counts as " +
			"opened on a 2xx answer whose body matches `success_match` (when given). `expect: opened` (default) fails when the " +
			"opener refuses; `expect: refused` fails when it opens (the lease is still closed at cleanup); `expect: any` only " +
			"reports. The request goes from `host` (local or lab:NAME) with curl inside lab hosts, the body and headers on stdin, " +
			"never on a command line. A lease portgate opens is closed by port.close at cleanup (`close: false` keeps it).",
		New: func() steps.Step {
			return &Open{PasswordField: "pw", IPField: "ipaddr", Conn: Conn{Timeout: 10 * time.Second}, Expect: "opened", Close: true, Attempts: 1, OpenWait: 5 * time.Second}
		},
		Outputs: []steps.Output{
			{Name: "opened", Type: "bool", Doc: "the opener granted the request"},
			{Name: "status", Type: "int", Doc: "HTTP status of the answer"},
			{Name: "reason", Type: "string", Doc: "why it was refused: the opener's error code and message (empty when opened)"},
			{Name: "refusal", Type: "string", Doc: "how it was refused, the same for every driver: auth (wrong credentials), not_allowed (port or address), throttled (held back unseen), bad_request, error, or silent (fwknop: no answer, and the port did not open); empty when opened"},
			{Name: "throttled", Type: "bool", Doc: "portgate: some attempt was held back unseen (429): the gate throttles guessing"},
			{Name: "attempts", Type: "int", Doc: "requests sent"},
			{Name: "driver", Type: "string", Doc: "portgate, form or fwknop"},
			{Name: "lease_id", Type: "string", Doc: "portgate: the lease id (empty with mode: form)"},
			{Name: "ip", Type: "string", Doc: "portgate: the address let in, as the opener saw or was told it"},
			{Name: "port", Type: "int", Doc: "the port asked for"},
			{Name: "expires", Type: "string", Doc: "portgate: the lease end, RFC 3339 UTC with milliseconds"},
			{Name: "expires_unix", Type: "int", Doc: "portgate: the lease end, Unix seconds (rounded up)"},
			{Name: "expires_in_ms", Type: "int", Doc: "portgate: milliseconds from the answer to the lease end"},
			{Name: "code", Type: "string", Doc: "portgate: the code sent (feed it to a later port.open to check replays)", Secret: true},
			{Name: "token", Type: "string", Doc: "portgate: the bearer token that closes the lease", Secret: true},
		},
		Figures: openFigures,
		Examples: []steps.Example{
			{Title: "Open SSH for lab client 1 for 10 s", YAML: "- id: open\n  uses: port.open\n  with:\n    url: ${{ vars.portgate.url }}\n    ca_cert: ${{ vars.portgate.ca_cert }}\n    user: ${{ vars.portgate.user }}\n    secret: ${{ secrets.portgate_totp }}\n    port: 22\n    duration: 10s\n    host: lab:pgclient1"},
			{Title: "A replayed code opens nothing", YAML: "- uses: port.open\n  with:\n    url: ${{ vars.portgate.url }}\n    user: drill\n    code: ${{ steps.open.outputs.code }}\n    port: 22\n    host: lab:pgclient2\n    expect: refused"},
			{Title: "The seed's openport.php", YAML: "- uses: port.open\n  with:\n    mode: form\n    url: https://gate.example.com/openport.php\n    password: ${{ secrets.openport_password }}\n    port: 22\n    success_match: lime"},
		},
	})
	steps.Register(steps.Spec{
		Name:    "port.expiry",
		Summary: "Watch a leased port around its lease end: it must close on time, neither early nor late",
		Doc: "Probes `address` from `host` (local, optionally from `source`, or lab:NAME with nc) every `interval` until " +
			"a probe finds it closed, and compares when with `expires` (port.open's expires output). It fails when the port " +
			"closes more than `tolerance` after the end (the lease outlived itself), or more than `tolerance` before it (the " +
			"lease was cut short), or is still open well after it. A probe of a dropped port takes `timeout` to give up, so " +
			"the moment recorded is when the failing probe started. Once closed, the port must stay closed for `hold` (probed every " +
			"`interval`): a port that opens again, because something re-adds the rule, fails as not closed. Start it while the lease is live.",
		New: func() steps.Step {
			return &Expiry{Tolerance: time.Second, Interval: 200 * time.Millisecond, Timeout: time.Second, Hold: time.Second}
		},
		Outputs: []steps.Output{
			{Name: "closed", Type: "bool", Doc: "the port was found closed"},
			{Name: "closed_after_ms", Type: "int", Doc: "when the first failing probe started, in ms after the lease end (negative: before)"},
			{Name: "last_open_ms", Type: "int", Doc: "when the last successful probe started, in ms after the lease end"},
			{Name: "probes", Type: "int", Doc: "probes made"},
			{Name: "reopened", Type: "bool", Doc: "the port was found open again within hold of closing (closed is then false)"},
			{Name: "reopened_after_ms", Type: "int", Doc: "when the probe that found it open again started, in ms after the lease end"},
		},
		Figures: expiryFigures,
		Examples: []steps.Example{
			{Title: "SSH closes when the lease ends", YAML: "- uses: port.expiry\n  with:\n    address: ${{ vars.portgate.gate }}:22\n    expires: ${{ steps.open.outputs.expires }}\n    host: lab:pgclient1\n    tolerance: 2s"},
		},
	})
	steps.Register(steps.Spec{
		Name:    "port.close",
		Summary: "Close a portgate lease before it ends",
		Doc: "Sends DELETE `url`/v1/leases/`lease_id` with the lease's `token` (port.open's token output) or an admin token, or " +
			"with TOTP credentials (`user` and `secret`/`code`: the lease's owner). A lease that already ended counts as closed " +
			"(already_gone). `expect: closed` (default) fails when the lease could not be closed.",
		New: func() steps.Step { return &Close{Conn: Conn{Timeout: 10 * time.Second}, Expect: "closed"} },
		Outputs: []steps.Output{
			{Name: "closed", Type: "bool", Doc: "the lease is closed (now, or it had already ended)"},
			{Name: "already_gone", Type: "bool", Doc: "the lease had already ended or been closed"},
			{Name: "status", Type: "int", Doc: "HTTP status of the answer"},
		},
		Figures: closeFigures,
		Examples: []steps.Example{
			{Title: "Close early", YAML: "- uses: port.close\n  with:\n    url: ${{ vars.portgate.url }}\n    lease_id: ${{ steps.open.outputs.lease_id }}\n    token: ${{ steps.open.outputs.token }}\n    host: lab:pgclient1"},
		},
	})
}
