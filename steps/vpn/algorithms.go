package vpn

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// AWS algorithm names, as the Generic file and the tunnel options spell
// them, mapped to strongSwan proposal keywords.
var (
	encryption = map[string]string{
		"aes-128-cbc":    "aes128",
		"aes-256-cbc":    "aes256",
		"aes128":         "aes128",
		"aes256":         "aes256",
		"aes-128-gcm-16": "aes128gcm16",
		"aes-256-gcm-16": "aes256gcm16",
		"aes128-gcm-16":  "aes128gcm16",
		"aes256-gcm-16":  "aes256gcm16",
	}
	ikeIntegrity = map[string]string{
		"sha1":     "sha1",
		"sha2-256": "sha256",
		"sha2-384": "sha384",
		"sha2-512": "sha512",
		"sha256":   "sha256",
		"sha384":   "sha384",
		"sha512":   "sha512",
	}
	espIntegrity = map[string]string{
		"hmac-sha1-96":      "sha1",
		"hmac-sha2-256-128": "sha256",
		"hmac-sha2-384-192": "sha384",
		"hmac-sha2-512-256": "sha512",
		"sha1":              "sha1",
		"sha2-256":          "sha256",
		"sha2-384":          "sha384",
		"sha2-512":          "sha512",
	}
	// dhGroups maps IANA Diffie-Hellman group numbers (the ones AWS offers)
	// to strongSwan keywords.
	dhGroups = map[int]string{
		2: "modp1024", 5: "modp1536", 14: "modp2048", 15: "modp3072", 16: "modp4096",
		17: "modp6144", 18: "modp8192", 19: "ecp256", 20: "ecp384", 21: "ecp521",
		22: "modp1024s160", 23: "modp2048s224", 24: "modp2048s256",
	}
)

func groupList() string {
	var gs []int
	for g := range dhGroups {
		gs = append(gs, g)
	}
	sort.Ints(gs)
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = strconv.Itoa(g)
	}
	return strings.Join(parts, ", ")
}

func isAEAD(keyword string) bool { return strings.Contains(keyword, "gcm") }

// proposals renders strongSwan proposals from AWS names: one proposal for
// the plain ciphers and one for the AEAD ones (which take a PRF in IKE and no
// integrity algorithm in ESP). groups are appended as DH (IKE) or PFS (ESP)
// groups.
func proposals(enc, integ []string, groups []int, integMap map[string]string, ike bool) string {
	var plain, aead []string
	for _, e := range enc {
		k := encryption[e]
		if isAEAD(k) {
			aead = append(aead, k)
		} else {
			plain = append(plain, k)
		}
	}
	var ints []string
	for _, i := range integ {
		ints = appendUnique(ints, integMap[i])
	}
	var dh []string
	for _, g := range groups {
		dh = append(dh, dhGroups[g])
	}
	var out []string
	if len(plain) > 0 {
		out = append(out, strings.Join(concat(plain, ints, dh), "-"))
	}
	if len(aead) > 0 {
		var prfs []string
		if ike {
			for _, i := range ints {
				prfs = append(prfs, "prf"+i)
			}
		}
		out = append(out, strings.Join(concat(aead, prfs, dh), "-"))
	}
	return strings.Join(out, ",")
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// charon reports negotiated algorithms by IANA-style names (AES_CBC with a
// key size, HMAC_SHA1_96, PRF_HMAC_SHA1, MODP_1024); keyword turns them into
// the proposal keywords a configuration uses, so a drill can compare what was
// negotiated with what was configured.

func encrKeyword(alg, keysize string) string {
	switch strings.ToUpper(alg) {
	case "":
		return ""
	case "AES_CBC":
		return "aes" + keysize
	case "AES_GCM_16":
		return "aes" + keysize + "gcm16"
	case "AES_GCM_12":
		return "aes" + keysize + "gcm12"
	case "AES_GCM_8":
		return "aes" + keysize + "gcm8"
	case "AES_CTR":
		return "aes" + keysize + "ctr"
	case "3DES_CBC":
		return "3des"
	}
	return strings.ToLower(strings.ReplaceAll(alg, "_", "")) + keysize
}

var integKeywords = map[string]string{
	"HMAC_SHA1_96":      "sha1",
	"HMAC_SHA2_256_128": "sha256",
	"HMAC_SHA2_384_192": "sha384",
	"HMAC_SHA2_512_256": "sha512",
	"HMAC_MD5_96":       "md5",
	"AES_XCBC_96":       "aesxcbc",
}

func integKeyword(alg string) string {
	if k, ok := integKeywords[strings.ToUpper(alg)]; ok {
		return k
	}
	return strings.ToLower(strings.ReplaceAll(alg, "_", ""))
}

func prfKeyword(alg string) string {
	a := strings.TrimPrefix(strings.ToUpper(alg), "PRF_")
	switch a {
	case "":
		return ""
	case "HMAC_SHA1":
		return "prfsha1"
	case "HMAC_SHA2_256":
		return "prfsha256"
	case "HMAC_SHA2_384":
		return "prfsha384"
	case "HMAC_SHA2_512":
		return "prfsha512"
	}
	return "prf" + strings.ToLower(strings.ReplaceAll(a, "_", ""))
}

func dhKeyword(alg string) string {
	a := strings.ToUpper(alg)
	switch {
	case a == "":
		return ""
	case strings.HasPrefix(a, "MODP_") && strings.Count(a, "_") == 2: // MODP_1024_160
		p := strings.Split(a, "_")
		return fmt.Sprintf("modp%ss%s", p[1], p[2])
	}
	return strings.ToLower(strings.ReplaceAll(a, "_", ""))
}

// negotiatedProposal renders what charon negotiated as one proposal in
// keyword form: encryption, integrity (none with AEAD), the PRF only when it
// differs from the integrity algorithm's (IKE with AEAD), and the group.
func negotiatedProposal(encr, keysize, integ, prf, dh string) string {
	var parts []string
	e := encrKeyword(encr, keysize)
	parts = append(parts, e)
	i := ""
	if integ != "" {
		i = integKeyword(integ)
		parts = append(parts, i)
	}
	if p := prfKeyword(prf); p != "" && p != "prf"+i {
		parts = append(parts, p)
	}
	if d := dhKeyword(dh); d != "" {
		parts = append(parts, d)
	}
	return strings.Join(parts, "-")
}
