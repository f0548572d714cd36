package runner

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestShardsAreStableAndCoverEverything(t *testing.T) {
	var scs []*Scenario
	for i := 0; i < 400; i++ {
		scs = append(scs, &Scenario{File: fmt.Sprintf("drills/d%03d.yaml", i), Name: fmt.Sprintf("d%03d", i), SHA256: "x"})
	}
	const n = 4
	owner := map[string]int{}
	for k := 1; k <= n; k++ {
		part, info := SelectShard(scs, k, n)
		assert.Equal(t, k, info.Index)
		assert.Equal(t, 400, info.SetSize)
		assert.InDelta(t, 100, len(part), 30, "shard %d is roughly a quarter", k)
		for _, sc := range part {
			_, dup := owner[sc.File]
			require.False(t, dup, "%s in two shards", sc.File)
			owner[sc.File] = k
		}
	}
	assert.Len(t, owner, 400)

	// Adding a scenario moves nobody; the set's fingerprint changes.
	more := append(append([]*Scenario(nil), scs...), &Scenario{File: "drills/new.yaml", Name: "new", SHA256: "y"})
	_, before := SelectShard(scs, 1, n)
	_, after := SelectShard(more, 1, n)
	assert.NotEqual(t, before.Set, after.Set)
	for _, sc := range scs {
		assert.Equal(t, owner[sc.File], ShardOf(sc, n))
	}
	// Same paths and names, other content: another set.
	changed := append([]*Scenario(nil), scs...)
	changed[7] = &Scenario{File: scs[7].File, Name: scs[7].Name, SHA256: "z"}
	_, c := SelectShard(changed, 1, n)
	assert.NotEqual(t, before.Set, c.Set)
}

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		k, n int
		ok   bool
	}{{"1/4", 1, 4, true}, {"4/4", 4, 4, true}, {" 2 / 3 ", 2, 3, true}, {"0/4", 0, 0, false}, {"5/4", 0, 0, false}, {"4", 0, 0, false}, {"x/4", 0, 0, false}} {
		k, n, err := ParseShard(tc.in)
		if !tc.ok {
			assert.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, [2]int{tc.k, tc.n}, [2]int{k, n})
	}
}
