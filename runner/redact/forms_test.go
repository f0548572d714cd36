package redact

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRedactsEscapedAndQuotedForms(t *testing.T) {
	secret := "Kq7\"Zx/a+b&c=d%e f'é😀"
	js, _ := json.Marshal(secret)
	cases := map[string]string{
		"json":            string(js[1 : len(js)-1]),
		"%q":              strings.Trim(strconv.Quote(secret), `"`),
		"%+q":             strings.Trim(strconv.QuoteToASCII(secret), `"`),
		"python repr":     `Kq7"Zx/a+b&c=d%e f\'é😀`,
		"python json":     `Kq7\"Zx/a+b&c=d%e f'\u00e9\ud83d\ude00`,
		"quote":           "Kq7%22Zx/a%2Bb%26c%3Dd%25e%20f%27%C3%A9%F0%9F%98%80",
		"quote_plus":      "Kq7%22Zx%2Fa%2Bb%26c%3Dd%25e+f%27%C3%A9%F0%9F%98%80",
		"lower hex":       "Kq7%22Zx%2fa%2bb%26c%3dd%25e+f%27%c3%a9%f0%9f%98%80",
		"URL.String() pw": strings.TrimPrefix(url.UserPassword("u", secret).String(), "u:"),
		"URL path":        strings.TrimPrefix((&url.URL{Path: "/" + secret}).EscapedPath(), "/"),
	}
	var r Redactor
	r.Add(secret)
	for name, form := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, "x=*** y", r.String("x="+form+" y"))
		})
	}
}

func TestRedactsEachLineOfAMultiLineSecret(t *testing.T) {
	pem := "-----BEGIN PRIVATE KEY-----\r\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nshort\n-----END PRIVATE KEY-----"
	var r Redactor
	r.Add(pem)
	assert.Equal(t, "key: ***", r.String("key: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"))
	assert.Equal(t, "***\n", r.String("-----BEGIN PRIVATE KEY-----\n"))
	assert.Equal(t, "short", r.String("short"), "lines under 8 characters are not secrets on their own")
	assert.Equal(t, "pem=***", r.String(`pem=`+strings.Trim(strconv.Quote(pem), `"`)))
}

func TestMasksPiecesOfASecretBesideACut(t *testing.T) {
	var r Redactor
	r.Add("Kq7ZxAb9Secret")
	cases := []struct{ in, want string }{
		{"stderr: eeeeKq7Zx…", "stderr: eeee***…"},
		{"cannot unmarshal `Kq7ZxAb...` into int", "cannot unmarshal `***...` into int"},
		{"…Secret tail", "…*** tail"},
		{"…9Secret and Kq7ZxAb9Secret", "…*** and ***"},
		{"unrelated… text", "unrelated… text"},
		{"K…", "K…"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			assert.Equal(t, tc.want, r.String(tc.in))
		})
	}
}
