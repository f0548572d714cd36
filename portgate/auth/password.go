package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// PasswordHash is a user's second factor as the configuration stores it:
// an argon2id hash in the PHC string format
// ($argon2id$v=19$m=KIB,t=PASSES,p=LANES$SALT$HASH, base64 without padding)
// or a bcrypt hash ($2a$, $2b$ or $2y$).
type PasswordHash struct {
	bcrypt []byte
	// argon2id
	salt, sum   []byte
	mem, passes uint32
	lanes       uint8
}

// Argon2id parameters of HashPassword: OWASP's recommended minimum (19 MiB,
// 2 passes, 1 lane), a few tens of milliseconds per check.
const (
	argonMemKiB = 19 * 1024
	argonPasses = 2
	argonLanes  = 1
	argonSalt   = 16
	argonKey    = 32
)

// HashPassword returns a new argon2id hash of password (random salt) for
// the configuration's password_hash.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("the password is empty")
	}
	salt := make([]byte, argonSalt)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	sum := argon2.IDKey([]byte(password), salt, argonPasses, argonMemKiB, argonLanes, argonKey)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemKiB, argonPasses, argonLanes,
		b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

// ParsePasswordHash reads a hash. Errors describe the form, never quote it.
func ParsePasswordHash(s string) (*PasswordHash, error) {
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		cost, err := bcrypt.Cost([]byte(s))
		if err != nil {
			return nil, errors.New("not a valid bcrypt hash")
		}
		if cost < 10 {
			return nil, fmt.Errorf("bcrypt cost %d is below 10", cost)
		}
		return &PasswordHash{bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	}
	return nil, errors.New("expected an argon2id hash ($argon2id$..., from portgate hash-password) or a bcrypt hash ($2b$...)")
}

func parseArgon2id(s string) (*PasswordHash, error) {
	bad := errors.New("malformed argon2id hash: expected $argon2id$v=19$m=KIB,t=PASSES,p=LANES$SALT$HASH")
	f := strings.Split(s, "$")
	if len(f) != 6 || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return nil, bad
	}
	h := &PasswordHash{}
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil || n == 0 {
			return nil, bad
		}
		switch k {
		case "m":
			h.mem = uint32(n)
		case "t":
			h.passes = uint32(n)
		case "p":
			if n > 255 {
				return nil, bad
			}
			h.lanes = uint8(n)
		default:
			return nil, bad
		}
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(f[4]); err != nil || len(h.salt) < 8 {
		return nil, bad
	}
	if h.sum, err = base64.RawStdEncoding.DecodeString(f[5]); err != nil || len(h.sum) < 16 {
		return nil, bad
	}
	switch {
	case h.mem == 0 || h.passes == 0 || h.lanes == 0:
		return nil, bad
	case h.mem < 8*1024:
		return nil, fmt.Errorf("argon2id memory m=%d KiB is below 8 MiB: too cheap to guess against", h.mem)
	case h.mem > 1<<20:
		return nil, fmt.Errorf("argon2id memory m=%d KiB is above 1 GiB", h.mem)
	}
	return h, nil
}

// Verify reports, in constant time for a given hash, whether password is
// the one hashed.
func (h *PasswordHash) Verify(password string) bool {
	if h.bcrypt != nil {
		return bcrypt.CompareHashAndPassword(h.bcrypt, []byte(password)) == nil
	}
	sum := argon2.IDKey([]byte(password), h.salt, h.passes, h.mem, h.lanes, uint32(len(h.sum)))
	return subtle.ConstantTimeCompare(sum, h.sum) == 1
}
