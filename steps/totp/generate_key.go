package totp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/opsdrill/opsdrill/steps"
)

// Key sizes accepted by totp.generate_key. RFC 4226 R6 requires at least
// 128 bits and recommends 160; HMAC hashes keys longer than the hash block
// (64 bytes for SHA1 and SHA256), so more than 64 bytes adds nothing.
const (
	defaultKeyBytes = 20
	minKeyBytes     = 16
	maxKeyBytes     = 64
	qrPixels        = 320
)

// GenerateKey is totp.generate_key: it provisions a new random key and
// everything a user needs to enrol it in FreeOTP or Google Authenticator.
type GenerateKey struct {
	Format  `yaml:",inline"`
	Bytes   int    `yaml:"bytes" doc:"secret length in bytes, read from crypto/rand (default 20; 16 to 64: RFC 4226 R6)"`
	Issuer  string `yaml:"issuer" required:"true" doc:"issuer shown by the app (FreeOTP 'Issuer'); no colon"`
	Account string `yaml:"account" required:"true" doc:"account shown by the app (FreeOTP 'ID'), e.g. an email address; no colon"`
	QR      bool   `yaml:"qr" doc:"write a QR code PNG of the key URI into the report folder (default true)"`
	ShowQR  bool   `yaml:"show_qr" doc:"let reports display the QR code image; it encodes the secret (default false)"`

	// random is the entropy source; nil means crypto/rand.
	random io.Reader
	// render draws the QR image; nil means renderQR.
	render func(w, h int) (image.Image, error)
}

func newGenerateKey() steps.Step {
	return &GenerateKey{Bytes: defaultKeyBytes, QR: true}
}

// Validate checks the parameters; it runs at load time.
func (g *GenerateKey) Validate() error {
	if _, err := g.Format.resolve(); err != nil {
		return err
	}
	if g.Bytes < minKeyBytes {
		return fmt.Errorf("bytes: must be at least %d (128 bits, RFC 4226 R6; 20 recommended), got %d", minKeyBytes, g.Bytes)
	}
	if g.Bytes > maxKeyBytes {
		return fmt.Errorf("bytes: must be at most %d (longer HMAC keys are hashed down), got %d", maxKeyBytes, g.Bytes)
	}
	for _, f := range []struct{ name, value string }{{"issuer", g.Issuer}, {"account", g.Account}} {
		if strings.TrimSpace(f.value) == "" {
			return fmt.Errorf("%s: required", f.name)
		}
		if strings.Contains(f.value, ":") {
			return fmt.Errorf("%s: must not contain ':' (it separates issuer and account in the key URI), got %q", f.name, f.value)
		}
	}
	if g.ShowQR && !g.QR {
		return errors.New("show_qr: needs qr: true")
	}
	return nil
}

// Run generates the key and publishes it.
func (g *GenerateKey) Run(ctx context.Context, env *steps.Env) error {
	if err := g.Validate(); err != nil {
		return err
	}
	s, _ := g.Format.resolve()
	random := g.random
	if random == nil {
		random = rand.Reader
	}
	secret := make([]byte, g.Bytes)
	if _, err := io.ReadFull(random, secret); err != nil {
		return fmt.Errorf("reading %d random bytes: %w", g.Bytes, err)
	}
	hexKey := hex.EncodeToString(secret)
	b32Key := b32.EncodeToString(secret)
	uri := keyURI(g.Issuer, g.Account, b32Key, s)
	// Mark every form before anything can print it.
	for _, v := range []string{hexKey, strings.ToUpper(hexKey), b32Key, uri} {
		env.Secret(v)
	}
	env.SetOutput("hex", hexKey)
	env.SetOutput("base32", b32Key)
	env.SetOutput("uri", uri)
	env.SetOutput("issuer", g.Issuer)
	env.SetOutput("account", g.Account)
	env.SetOutput("digits", s.digits)
	env.SetOutput("period", int(s.period))
	env.SetOutput("algorithm", s.alg.String())

	qrRel := ""
	if g.QR {
		render := g.render
		if render == nil {
			render = func(w, _ int) (image.Image, error) { return renderQR(uri, w) }
		}
		abs, rel, err := writeQR(ctx, env, render)
		if err != nil {
			return err
		}
		qrRel = rel
		if err := checkQR(abs, qrRel, uri); err != nil {
			return err
		}
		env.SetOutput("qr_verified", true)
		env.Logf("%s decodes (ZXing QR reader) to exactly the key URI", qrRel)
		env.AddEvidence(steps.Evidence{
			Kind: "image", Title: "Key URI QR code (scan with FreeOTP)",
			Path: qrRel, MediaType: "image/png", Show: g.ShowQR,
		})
	}
	env.SetOutput("qr_png", qrRel)
	env.AddEvidence(steps.TableEvidence("FreeOTP manual entry", []string{"Field", "Value"}, [][]string{
		{"Issuer", g.Issuer},
		{"ID", g.Account},
		{"Secret", "(secret output base32)"},
		{"Interval", strconv.FormatInt(s.period, 10) + " s"},
		{"Digits", strconv.Itoa(s.digits)},
		{"Algorithm", s.alg.String()},
		{"Type", "TOTP"},
	}))
	warnSevenDigits(env, s.digits)
	env.Logf("generated a %d-bit %s key for %s:%s (%d digits, %d s)", 8*g.Bytes, s.alg, g.Issuer, g.Account, s.digits, s.period)
	if s.digits != defaultDigits || s.period != defaultPeriod || s.alg.String() != defaultAlgorithm {
		env.Logf("note: Google Authenticator may ignore digits, period and algorithm other than 6, 30 and SHA1; FreeOTP honours them")
	}
	return nil
}

// writeQR renders the key URI as a PNG in the report folder, readable by
// the owner only since it holds the secret, and returns its absolute and
// relative paths.
func writeQR(ctx context.Context, env *steps.Env, render func(w, h int) (image.Image, error)) (abs, rel string, err error) {
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	img, err := render(qrPixels, qrPixels)
	if err != nil {
		return "", "", fmt.Errorf("rendering the QR code: %w", err)
	}
	abs, rel, err = env.ArtifactPath("qr.png")
	if err != nil {
		return "", "", fmt.Errorf("qr_png: %w", err)
	}
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("qr_png: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return "", "", fmt.Errorf("qr_png: writing %s: %w", rel, err)
	}
	if err := f.Close(); err != nil {
		return "", "", fmt.Errorf("qr_png: writing %s: %w", rel, err)
	}
	return abs, rel, nil
}

// checkQR reads the PNG back from disk, as a phone's camera would see it,
// decodes it and requires exactly the key URI. The failure names what
// differs, never a value.
func checkQR(abs, rel, uri string) error {
	f, err := os.Open(abs)
	if err != nil {
		return fmt.Errorf("qr_png: %w", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return fmt.Errorf("qr_png: reading %s back: %w", rel, err)
	}
	text, err := decodeQR(img)
	if err != nil {
		return steps.Failf("qr_png: %s: %v", rel, err)
	}
	if text != uri {
		return steps.Failf("qr_png: %s decodes to a different key URI than the uri output (differs in: %s)",
			rel, strings.Join(uriDifferences(uri, text), ", "))
	}
	return nil
}
