package runner

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/opsdrill/opsdrill/reports"
)

// ParseShard reads a --shard value: K/N, 1 <= K <= N.
func ParseShard(s string) (k, n int, err error) {
	a, b, ok := strings.Cut(s, "/")
	if ok {
		k, err = strconv.Atoi(strings.TrimSpace(a))
		if err == nil {
			n, err = strconv.Atoi(strings.TrimSpace(b))
		}
	}
	if !ok || err != nil || n < 1 || k < 1 || k > n {
		return 0, 0, fmt.Errorf("--shard %q: expected K/N with 1 <= K <= N, e.g. 2/4", s)
	}
	return k, n, nil
}

// ShardOf is the shard (1-based, of n) a scenario belongs to: the first 8
// bytes of the SHA-256 of its file path (as given, slash-separated), a NUL
// and its name, as a big-endian number, modulo n. It depends on the
// scenario alone, so adding or removing a scenario never moves another one
// to a different shard.
func ShardOf(sc *Scenario, n int) int {
	sum := sha256.Sum256([]byte(filepath.ToSlash(filepath.Clean(sc.File)) + "\x00" + sc.Name))
	return int(binary.BigEndian.Uint64(sum[:8])%uint64(n)) + 1
}

// SelectShard returns the scenarios of shard k of n, in their order, and
// the shard's description for its report: the set it was cut from is
// fingerprinted (paths, names and file hashes of every scenario) so shards
// of different sets are never merged as one run.
func SelectShard(scenarios []*Scenario, k, n int) ([]*Scenario, *reports.Shard) {
	lines := make([]string, len(scenarios))
	var out []*Scenario
	for i, sc := range scenarios {
		lines[i] = filepath.ToSlash(filepath.Clean(sc.File)) + "\x00" + sc.Name + "\x00" + sc.SHA256
		if ShardOf(sc, n) == k {
			out = append(out, sc)
		}
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return out, &reports.Shard{Index: k, Total: n, Set: hex.EncodeToString(sum[:]), SetSize: len(scenarios)}
}
