package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
)

// Values JSON cannot encode as they are (integer map keys, non-finite
// numbers) reach the journal and every report encoded, and no scenario of
// the run loses its evidence.
func TestValuesJSONCannotEncodeKeepTheEvidence(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		src  string
		want map[string]any // report.json vars of the scenario
	}{
		{"integer map keys", Options{}, "vars: {ports: {22: ssh, 443: https}}\nsteps:\n  - uses: test.emit\n",
			map[string]any{"ports": map[string]any{"22": "ssh", "443": "https"}}},
		{"infinite var from --var", Options{Vars: map[string]any{"writers": math.Inf(1)}}, "vars: {writers: 5}\nsteps:\n  - uses: test.emit\n",
			map[string]any{"writers": "+Inf"}},
		{"non-finite vars in the file", Options{}, "vars: {lo: -.inf, nan: .nan, keys: {true: 1, 1.5: 2}}\nsteps:\n  - uses: test.emit\n",
			map[string]any{"lo": "-Inf", "nan": "NaN", "keys": map[string]any{"true": 1.0, "1.5": 2.0}}},
		{"non-finite and integer-keyed outputs", Options{}, "steps:\n  - uses: test.emit\n    with: { values: { 7: .inf } }\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := run(t, context.Background(), tc.opts, tc.src, "steps:\n  - uses: test.emit\n")
			for _, name := range []string{JournalFile, JSONFile, JUnitFile, HTMLFile, reports.ManifestName} {
				assert.FileExists(t, filepath.Join(h.dir, name))
			}
			var rep map[string]any
			require.NoError(t, json.Unmarshal([]byte(h.file(t, JSONFile)), &rep))
			scs := rep["scenarios"].([]any)
			require.Len(t, scs, 2, "the other scenario keeps its evidence too")
			sc := scs[0].(map[string]any)
			assert.Equal(t, "passed", sc["status"])
			if tc.want != nil {
				assert.Equal(t, tc.want, sc["vars"])
			}
			if tc.name == "non-finite and integer-keyed outputs" {
				out := sc["steps"].([]any)[0].(map[string]any)["outputs"].(map[string]any)
				assert.Equal(t, map[string]any{"7": "+Inf"}, out["value"])
			}
			// Every journal line is JSON, and the journal renders again.
			f, err := os.Open(filepath.Join(h.dir, JournalFile))
			require.NoError(t, err)
			defer f.Close()
			lines := 0
			for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
				require.True(t, json.Valid(sc.Bytes()), sc.Text())
			}
			assert.Greater(t, lines, 6)
			_, err = f.Seek(0, 0)
			require.NoError(t, err)
			again, err := reports.ReadJournal(f)
			require.NoError(t, err)
			assert.Equal(t, reports.StatusPassed, again.Status)
		})
	}
}

func TestPlainValue(t *testing.T) {
	type inner struct {
		Name  string  `json:"name"`
		Ratio float64 `json:"ratio"`
		Skip  string  `json:"-"`
	}
	cases := []struct {
		name string
		in   any
		want any
	}{
		{"string", "x", "x"},
		{"any-keyed map", map[any]any{22: "ssh", "a": []any{1, math.NaN()}}, map[string]any{"22": "ssh", "a": []any{1, "NaN"}}},
		{"int-keyed map", map[int]string{1: "a"}, map[string]any{"1": "a"}},
		{"struct with a NaN", inner{Name: "n", Ratio: math.NaN(), Skip: "s"}, map[string]any{"name": "n", "ratio": "NaN"}},
		{"struct", &inner{Name: "n", Ratio: 2}, map[string]any{"name": "n", "ratio": json.Number("2")}},
		{"bytes", []byte("raw"), "raw"},
		{"nil", nil, nil},
		{"func", func() {}, "func"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := reports.PlainValue(tc.in)
			if tc.name == "func" {
				assert.True(t, strings.HasPrefix(got.(string), "0x"), "%v", got)
				return
			}
			assert.Equal(t, tc.want, got)
			_, err := json.Marshal(got)
			assert.NoError(t, err)
		})
	}
}
