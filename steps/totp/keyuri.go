package totp

import (
	"errors"
	"fmt"
	"image"
	"net/url"
	"strconv"
	"strings"

	"github.com/boombuler/barcode/qr"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

// keyURI builds the otpauth:// key URI of Google Authenticator's Key Uri
// Format, which FreeOTP reads too:
//
//	otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=ISSUER&algorithm=…&digits=…&period=…
//
// The label and every parameter value are percent-encoded here, every byte
// except RFC 3986's unreserved characters, so spaces become %20 (never '+',
// which an app's query parser reads as a space) and '&', '+', '#', '?', '/'
// and '%' cannot end a value early or change it. pquerna/otp's Generate
// escapes the query with url.PathEscape, which leaves '&' and '+' alone:
// issuer "R&D" came out as issuer "R" plus a stray parameter. The colon
// between issuer and account stays literal, as the format shows it, and so
// does an '@' in the label.
func keyURI(issuer, account, secretB32 string, s settings) string {
	var b strings.Builder
	b.WriteString("otpauth://totp/")
	b.WriteString(uriEscape(issuer, "@"))
	b.WriteByte(':')
	b.WriteString(uriEscape(account, "@"))
	b.WriteString("?secret=")
	b.WriteString(secretB32)
	b.WriteString("&issuer=")
	b.WriteString(uriEscape(issuer, ""))
	b.WriteString("&algorithm=")
	b.WriteString(s.alg.String())
	b.WriteString("&digits=")
	b.WriteString(strconv.Itoa(s.digits))
	b.WriteString("&period=")
	b.WriteString(strconv.FormatInt(s.period, 10))
	return b.String()
}

// uriEscape percent-encodes every byte of s (UTF-8) that is not an RFC 3986
// unreserved character (ALPHA / DIGIT / "-" / "." / "_" / "~") or in keep.
// The label keeps '@', legal in a path and how the format's own examples
// write an account (alice@google.com).
func uriEscape(s, keep string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', strings.IndexByte(keep, c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		}
	}
	return b.String()
}

// quietZone is the blank border, in modules, that ISO/IEC 18004 requires
// around a QR code; scanners look for it to find the symbol.
const quietZone = 4

// renderQR draws text as a QR code (error correction M) with whole-pixel
// modules and the quiet zone, in at most size pixels a side (and at least
// one pixel a module). Scaling a symbol by a fraction, as pquerna/otp's
// Key.Image does, makes modules of uneven width that decoders misread:
// ZXing could not read a 32-byte key's URI drawn that way.
func renderQR(text string, size int) (image.Image, error) {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return nil, err
	}
	n := code.Bounds().Dx()
	scale := max(size/(n+2*quietZone), 1)
	side := (n + 2*quietZone) * scale
	img := image.NewGray(image.Rect(0, 0, side, side))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y := range n {
		for x := range n {
			if r, _, _, _ := code.At(x, y).RGBA(); r != 0 {
				continue
			}
			for dy := range scale {
				off := ((quietZone+y)*scale+dy)*img.Stride + (quietZone+x)*scale
				for dx := range scale {
					img.Pix[off+dx] = 0
				}
			}
		}
	}
	return img, nil
}

// errQRUnreadable reports a QR image no decoder could read.
var errQRUnreadable = errors.New("the QR code cannot be decoded")

// decodeQR reads the text of the QR code in img with ZXing's QR reader
// (gozxing), a decoder independent of the encoder that drew it.
func decodeQR(img image.Image) (string, error) {
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errQRUnreadable, err)
	}
	// The finder-pattern detector, as a camera frame needs, then, if it
	// gives up, the reader for an upright symbol on a quiet zone, which is
	// what a PNG on a screen is.
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true})
	if err != nil {
		var pure error
		if res, pure = qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true}); pure != nil {
			return "", fmt.Errorf("%w: %w", errQRUnreadable, err)
		}
	}
	return res.GetText(), nil
}

// uriDifferences names the parts (never the values: the URI holds the
// secret) in which a decoded URI differs from the one that was encoded.
func uriDifferences(want, got string) []string {
	w, errW := url.Parse(want)
	g, errG := url.Parse(got)
	if errW != nil || errG != nil {
		return []string{"not a URI"}
	}
	var diff []string
	if w.Scheme != g.Scheme || w.Host != g.Host {
		diff = append(diff, "type")
	}
	if w.Path != g.Path {
		diff = append(diff, "label")
	}
	wq, gq := w.Query(), g.Query()
	for _, k := range []string{"secret", "issuer", "algorithm", "digits", "period"} {
		if wq.Get(k) != gq.Get(k) {
			diff = append(diff, k)
		}
	}
	if len(diff) == 0 && want != got {
		diff = append(diff, "encoding")
	}
	return diff
}
