// Package totp provides the TOTP (RFC 6238) drill steps: the runbook
// "Create One Time Password (OTP) For Your Applications Using FreeOTP" —
// make a key, enrol it in FreeOTP, validate codes on the server with
// oathtool — turned into checks a team runs nightly.
//
// It registers three steps from its init function; a program that runs
// scenarios blank-imports it:
//
//	import _ "github.com/opsdrill/opsdrill/steps/totp"
//
// The OTP arithmetic (HMAC, dynamic truncation) comes from
// github.com/pquerna/otp. The key URI is built here (keyuri.go): pquerna's
// escapes its query with url.PathEscape, which leaves '&' and '+' alone. The RFC 6238 counter, floor((t - T0) / period), is
// computed here because pquerna's totp package has no T0 and wraps around
// below counter 0.
//
// # Shared parameters
//
// Every step embeds [Format] (digits, period, algorithm: 6, 30, SHA1 by
// default, FreeOTP's and oathtool's defaults); totp.code and
// totp.verify_drift embed [Key], which adds the secret (secret in base32 or
// secret_hex), the instant (at: RFC 3339, "2006-01-02 15:04:05" UTC as the
// runbook gives oathtool -N, or @<unix seconds>), offset_steps and t0.
// Base32 is accepted in any case, with spaces, dashes or padding, and
// normalised. All parameter checks are in Validate, so a bad scenario is
// refused at load time with the field named. No error or log line ever
// quotes a key or a code; every form of a key a step handles is passed to
// [steps.Env.Secret].
//
// # totp.generate_key
//
// Reads bytes (default 20, minimum 16 per RFC 4226 R6, maximum 64) from
// crypto/rand and publishes hex, base32 (no padding) and the otpauth:// key
// URI as secret outputs, the FreeOTP manual-entry fields (issuer, account as
// FreeOTP's ID, digits, period, algorithm) as plain outputs, and a QR code of
// the URI as a PNG in the report folder. The label and every value of the
// URI are percent-encoded per the Key Uri Format; the PNG is read back,
// decoded with ZXing's QR reader (gozxing) and must give exactly the URI
// (qr_verified), else the step fails. The QR code encodes the secret: its
// evidence carries Show only when the scenario sets show_qr: true.
//
// # totp.code
//
// The code for a key at an instant plus offset_steps, with its counter and
// the instant used as outputs: what a phone shows, or showed.
//
// # totp.verify_drift
//
// Three modes, chosen by which parameter is set.
//
// reference: oathtool compares this package's codes with the oathtool binary
// over samples (instant, offset) pairs: counter 0, the configured instant,
// the 2038 and 2106 rollovers, then random instants up to 2^33 s after t0,
// each with offsets -2..+2. One oathtool call prints five consecutive codes
// (-w 4) and calls run in parallel, so 1,000 samples take well under a
// second. The key is passed on stdin, never on a command line. Any
// difference fails the step.
//
// code (plus at, default now) searches ±window steps nearest first and
// reports the signed offset as drift_steps (oathtool prints only its
// magnitude). liboath, behind oathtool -w and pam_oath, tries 0, +1, -1,
// +2, ...; search_order: liboath follows it, the default past_first tries
// 0, -1, +1, .... Both find the same distance; only a code that occurs at
// +k and -k tells them apart. With reference: oathtool as well, oathtool
// -w validates the code itself and its verdict is the step's; any
// disagreement with this implementation fails the step. drift_steps is set only when the code matched,
// so an expectation such as outputs.drift_steps == 0 cannot pass by default.
//
// endpoint or validator_command probes a live validator. This is where
// ordering matters. A validator meeting RFC 6238 §5.2 remembers the last
// counter it accepted for a user and refuses any code at or below it.
// Probing outward from the current code (0, -1, +1, ...) would therefore
// make the validator refuse -1 after accepting 0, and the window would look
// one-sided. So codes for offsets -window..+window are submitted strictly in
// ascending counter order: each accepted code is newer than every earlier
// one, and the refusals seen are the window's, not the replay protection's.
// The probe starts in the first half of a time step (it waits for the next
// step otherwise) and errors if it still crossed a boundary, since its
// offsets would then be ambiguous.
// From the accepted offsets come clock_offset_steps (the centre, rounded
// toward zero) and window_steps (the half-width); window_truncated says the
// window reached the probed edge.
//
// The replay check then needs a code that the validator has never seen and
// that lies above the highest counter it accepted, yet inside its window.
// Every clock, whatever its phase, is exactly one step further one period
// after the probe ended; at that moment the code one counter above the
// highest accepted one is such a code. It is submitted twice: the first
// submission must be accepted (if not, the validator is rate-limiting or
// locking out and the step fails, since no verdict on replays is possible),
// and replay_rejected reports whether the second was refused. The check
// therefore adds one period to the step, which with the wait for the first
// half of a step makes at most 1.5 periods (45 s by default); replay_check:
// false skips it. Validators that lock accounts after failures see the
// probe's refused codes as failures: keep window small and use delay when
// needed.
//
// The record of every submission (offset, counter, time, latency, verdict,
// HTTP status or exit status; never the code) is kept as evidence: a table
// "TOTP accepted-window diagram" and a series of offset → accepted (1/0).
//
// Policy is the scenario's: expect: outputs.drift_steps == 0,
// outputs.window_steps <= 1, outputs.replay_rejected, and so on.
package totp
