package redact

import (
	"strings"
	"testing"
)

// benchRedactor knows five secrets, one of them a multi-line PEM key: what
// a drill with a database password, an API token and a TLS key holds.
func benchRedactor() *Redactor {
	var r Redactor
	r.Add(`Kq7"Zx/a+b&c=d%e f`, "hunter2-secret-token", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		"-----BEGIN PRIVATE KEY-----\n"+strings.Repeat("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n", 25)+"-----END PRIVATE KEY-----")
	return &r
}

// BenchmarkRedact1MiB redacts 1 MiB of command output (the exec step's cap)
// holding no secret, the common case.
func BenchmarkRedact1MiB(b *testing.B) {
	r := benchRedactor()
	text := strings.Repeat("2026-12-01T09:00:00Z INFO request served in 12ms path=/api/v1/items\n", 1<<20/68)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for range b.N {
		_ = r.String(text)
	}
}

// BenchmarkRedactCutLine redacts a cut stderr excerpt (200 bytes and a
// "…"): the cut-mark check runs over every form.
func BenchmarkRedactCutLine(b *testing.B) {
	r := benchRedactor()
	line := strings.Repeat("e", 195) + "Kq7\"Z…"
	for range b.N {
		_ = r.String(line)
	}
}

// BenchmarkAddSecrets is the cost of learning the five secrets (every form
// computed, the replacer rebuilt).
func BenchmarkAddSecrets(b *testing.B) {
	for range b.N {
		_ = benchRedactor()
	}
}
