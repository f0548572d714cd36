package totp

import "github.com/opsdrill/opsdrill/steps"

func init() {
	for _, s := range specs {
		steps.Register(s)
	}
}

// specs are the three totp steps as the registry and `opsdrill steps` see them.
var specs = []steps.Spec{
	{
		Name:    "totp.generate_key",
		Summary: "Provision a random TOTP key with its key URI, QR code and FreeOTP fields",
		Doc: `Reads bytes (default 20, at least 16: RFC 4226 R6) from crypto/rand and
publishes the key as hex (oathtool's form), unpadded base32 (FreeOTP's
"Secret") and an otpauth:// key URI that FreeOTP and Google Authenticator
import, plus a QR code of the URI written into the report folder (mode 0600).
The URI's label and values are percent-encoded per the Key Uri Format, so
an issuer such as "R&D" or "Dev+Ops" survives; the PNG is read back and
decoded with ZXing's QR reader, and the step fails unless it gives exactly
the URI. 7 digits are allowed with a warning: FreeOTP up to 1.5 offers only
6 or 8.
hex, base32 and uri are secret outputs. The QR image encodes the secret, so
reports show it only with show_qr: true; qr: false does not write it at all.
The FreeOTP manual-entry fields (Issuer, ID, Interval, Digits, Algorithm)
are outputs too and are listed in the evidence, without the secret.`,
		New: newGenerateKey,
		Outputs: []steps.Output{
			{Name: "hex", Type: "string", Doc: "the key in hex, as oathtool takes it", Secret: true},
			{Name: "base32", Type: "string", Doc: "the key in base32 without padding: FreeOTP's Secret", Secret: true},
			{Name: "uri", Type: "string", Doc: "otpauth://totp/ key URI for FreeOTP and Google Authenticator", Secret: true},
			{Name: "qr_png", Type: "string", Doc: "QR code of the URI, a path relative to the report folder (empty with qr: false)"},
			{Name: "qr_verified", Type: "bool", Doc: "the PNG, read back and decoded with ZXing's QR reader, gives exactly uri (unset with qr: false; a mismatch fails the step)"},
			{Name: "issuer", Type: "string", Doc: "FreeOTP Issuer"},
			{Name: "account", Type: "string", Doc: "FreeOTP ID"},
			{Name: "digits", Type: "int", Doc: "FreeOTP Digits"},
			{Name: "period", Type: "int", Doc: "FreeOTP Interval, seconds"},
			{Name: "algorithm", Type: "string", Doc: "FreeOTP Algorithm: SHA1, SHA256 or SHA512"},
		},
		Figures: generateKeyFigures,
		Examples: []steps.Example{{
			Title: "A key for FreeOTP, checked later with oathtool",
			YAML: `- id: key
  uses: totp.generate_key
  with: { issuer: ACME VPN, account: alice@example.com }`,
		}},
	},
	{
		Name:    "totp.code",
		Summary: "Compute the TOTP code for a key at an instant",
		Doc: `Computes the RFC 6238 code an authenticator app shows for secret (base32)
or secret_hex at 'at' (default now), offset_steps time steps away. The
code is a secret output; counter is the RFC 6238 time counter of the code
and 'at' the instant used, so a later step can check the code at the same
instant.`,
		New: newCode,
		Outputs: []steps.Output{
			{Name: "code", Type: "string", Doc: "the code, zero-padded to digits", Secret: true},
			{Name: "counter", Type: "int", Doc: "RFC 6238 counter of the code, offset_steps included"},
			{Name: "at", Type: "string", Doc: "the instant used, RFC 3339 UTC"},
		},
		Examples: []steps.Example{{
			Title: "The code a phone showed a minute ago",
			YAML: `- id: late
  uses: totp.code
  with: { secret: "${{ steps.key.outputs.base32 }}", offset_steps: -2 }`,
		}},
	},
	{
		Name:    "totp.verify_drift",
		Summary: "Cross-check codes with oathtool, match a device's code, or probe a live validator",
		Doc: `One of four parameters chooses the check.

reference: oathtool alone compares this implementation with the oathtool binary
over 'samples' random instants and offsets (plus counter 0 and the 2038 and
2106 rollovers) for the key's algorithm, digits, period and t0; the step
fails if any code differs.

code (with 'at', default now) finds the offset within ±window steps at which
a code read from a device matches, nearest first, and keeps the sign:
drift_steps is negative for a slow device clock, and only set when matched.
search_order: liboath searches 0, +1, -1, +2, ... as oathtool -w and pam_oath
do; the default past_first searches 0, -1, +1, .... The order only matters
when a code occurs twice in the window. With reference: oathtool too,
oathtool itself validates the code (oathtool -w WINDOW -N at KEY CODE, the
key on stdin) and its verdict is matched; the step fails if this
implementation disagrees with it. A zone-less 'at' ("2017-08-16 22:46:00")
is local time, as oathtool -N reads it; Z and offsets are honoured.

endpoint (HTTP) or validator_command (argv, {code} replaced, exit 0 =
accepted) probes a live validator: codes for offsets -window..+window are
submitted from the most negative upward, so a validator that refuses any
counter at or below the last accepted one still shows its whole window;
then, one period later, a fresh code is submitted twice and the second must
be refused (RFC 6238 §5.2). The step fails when nothing is accepted.`,
		New: newVerifyDrift,
		Outputs: []steps.Output{
			{Name: "samples", Type: "int", Doc: "reference: codes compared"},
			{Name: "mismatches", Type: "int", Doc: "reference: codes that differ from oathtool"},
			{Name: "matched", Type: "bool", Doc: "code: the code matched within ±window"},
			{Name: "drift_steps", Type: "int", Doc: "code: offset of the match, device minus this machine, in steps (unset when not matched)"},
			{Name: "validated_by", Type: "string", Doc: "code with reference: oathtool: \"oathtool\", whose verdict matched is"},
			{Name: "oathtool_steps", Type: "int", Doc: "code with reference: oathtool: the distance oathtool -w printed (unset when not found)"},
			{Name: "accepted_offsets", Type: "list", Doc: "validator: offsets (steps from this machine's counter) the validator accepted, ascending"},
			{Name: "clock_offset_steps", Type: "int", Doc: "validator: centre of the accepted window (validator clock minus ours), rounded toward 0"},
			{Name: "window_steps", Type: "int", Doc: "validator: half-width of the accepted window (1 for offsets -1..+1)"},
			{Name: "window_truncated", Type: "bool", Doc: "validator: the accepted window touches ±window, so it may be wider"},
			{Name: "replay_rejected", Type: "bool", Doc: "validator: a code accepted once was refused the second time (unset with replay_check: false)"},
		},
		Figures: verifyDriftFigures,
		Examples: []steps.Example{
			{
				Title: "opsdrill agrees with the runbook's oathtool",
				YAML: `- uses: totp.verify_drift
  with: { secret: "${{ steps.key.outputs.base32 }}", reference: oathtool, samples: 1000 }
  expect: [ outputs.mismatches == 0 ]`,
			},
			{
				Title: "A code read from a phone is accepted by oathtool -w 2, without drift",
				YAML: `- uses: totp.verify_drift
  with: { secret_hex: "${{ steps.key.outputs.hex }}", code: "${{ vars.phone_code }}", at: "${{ vars.read_at }}", window: 2, reference: oathtool }
  expect: [ outputs.matched, outputs.drift_steps == 0 ]`,
			},
			{
				Title: "A live validator has no skew, a window of ±1 and replay protection",
				YAML: `- uses: totp.verify_drift
  with:
    secret: "${{ secrets.totp_key }}"
    endpoint: { url: "http://127.0.0.1:8080/open", user: alice, fields: { port: "22" } }
  expect:
    - outputs.clock_offset_steps == 0
    - outputs.window_steps <= 1
    - outputs.replay_rejected`,
			},
			{
				Title: "The runbook's server-side check over ssh",
				YAML: `- uses: totp.verify_drift
  with:
    secret: "${{ secrets.totp_key }}"
    validator_command: [ssh, otp-host, /usr/local/bin/check-otp, alice, "{code}"]`,
			},
		},
	},
}
