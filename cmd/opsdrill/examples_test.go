package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/runner"
)

// exampleFiles are the CI and Kubernetes examples users copy.
var exampleFiles = []string{
	"../../examples/ci/github-actions-nightly.yml",
	"../../examples/ci/gitlab-ci.yml",
	"../../examples/ci/github-actions-sharded.yml",
	"../../examples/ci/gitlab-ci-sharded.yml",
	"../../examples/k8s/indexed-job.yaml",
	"../../examples/k8s/merge-job.yaml",
}

// yamlDocs parses every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var v map[string]any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, path)
		docs = append(docs, v)
	}
	require.NotEmpty(t, docs, path)
	return docs
}

// strings walks a parsed YAML value for its strings; a list of strings
// (a container's command) counts as one command line too.
func yamlStrings(v any, out *[]string) {
	switch t := v.(type) {
	case string:
		*out = append(*out, t)
	case map[string]any:
		for _, c := range t {
			yamlStrings(c, out)
		}
	case []any:
		words := make([]string, 0, len(t))
		for _, c := range t {
			if s, ok := c.(string); ok {
				words = append(words, shellQuote(s))
			}
			yamlStrings(c, out)
		}
		if len(words) == len(t) && len(words) > 1 {
			*out = append(*out, strings.Join(words, " "))
		}
	}
}

func shellQuote(s string) string {
	if strings.ContainsAny(s, " \"'") {
		return "'" + s + "'"
	}
	return s
}

var opsdrillCall = regexp.MustCompile(`(?:^|[\s;&|(])(?:bin/)?opsdrill\s`)

// opsdrillCommands finds every opsdrill command line in a script: its
// words after "opsdrill", up to the end of the command (;, &&, ||, |, a
// newline not escaped).
func opsdrillCommands(script string) [][]string {
	script = strings.ReplaceAll(script, "\\\n", " ")
	var out [][]string
	for _, line := range strings.Split(script, "\n") {
		for _, loc := range opsdrillCall.FindAllStringIndex(line, -1) {
			rest := line[loc[1]:]
			out = append(out, shellWords(rest))
		}
	}
	return out
}

// shellWords splits a command the way sh would for our purpose: quotes
// group, and the command ends at ; && || | or a comment.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == ';' || c == '|' || c == '&' || c == '#' && !inWord:
			if inWord {
				words = append(words, cur.String())
			}
			return words
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// TestExamplesUseRealFlags parses the CI and Kubernetes examples and every
// opsdrill command in them against the CLI itself: the subcommand exists,
// every flag is one of its flags with a value of the right kind, and the
// arguments are what it accepts.
func TestExamplesUseRealFlags(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range exampleFiles {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var texts []string
			for _, doc := range yamlDocs(t, f) {
				yamlStrings(doc, &texts)
			}
			var cmds [][]string
			for _, s := range texts {
				cmds = append(cmds, opsdrillCommands(s)...)
			}
			require.NotEmpty(t, cmds, "%s runs opsdrill", f)
			for _, args := range cmds {
				root := newRootCmd()
				cmd, rest, err := root.Find(args)
				require.NoError(t, err, "%s: opsdrill %s", f, strings.Join(args, " "))
				require.NotEqual(t, root, cmd, "%s: opsdrill %s names no subcommand", f, strings.Join(args, " "))
				require.NoError(t, cmd.ParseFlags(rest), "%s: opsdrill %s", f, strings.Join(args, " "))
				require.NoError(t, cmd.ValidateArgs(cmd.Flags().Args()), "%s: opsdrill %s", f, strings.Join(args, " "))
				require.NoError(t, cmd.ValidateRequiredFlags(), "%s: opsdrill %s", f, strings.Join(args, " "))
				if v, err := cmd.Flags().GetString("shard"); err == nil && v != "" && !strings.Contains(v, "$") {
					_, _, err := runner.ParseShard(v)
					assert.NoError(t, err, f)
				}
				seen[cmd.CommandPath()] = true
				if cmd.Name() == "run" {
					seen["opsdrill run --shard "+cmd.Flags().Lookup("shard").Value.String()] = true
				}
			}
		})
	}
	assert.True(t, seen["opsdrill report merge"], "the examples merge shards")
	assert.True(t, seen["opsdrill run --shard ${{ matrix.shard }}/${{ strategy.job-total }}"], "GitHub matrix shards")
	assert.True(t, seen["opsdrill run --shard $CI_NODE_INDEX/$CI_NODE_TOTAL"], "GitLab parallel shards")
	assert.True(t, seen["opsdrill run --shard $k/$SHARDS"], "Indexed Job shards")
}

// TestShardingExamplesAreWiredUp checks the structure around the commands:
// the matrix, parallel: and the Indexed Job give as many shards as the
// merge expects.
func TestShardingExamplesAreWiredUp(t *testing.T) {
	gh := yamlDocs(t, "../../examples/ci/github-actions-sharded.yml")[0]
	jobs := gh["jobs"].(map[string]any)
	matrix := jobs["shard"].(map[string]any)["strategy"].(map[string]any)["matrix"].(map[string]any)
	assert.Equal(t, []any{1, 2, 3, 4}, matrix["shard"])
	merge := jobs["merge"].(map[string]any)
	assert.Equal(t, "shard", merge["needs"])
	assert.Equal(t, "always()", merge["if"], "failed shards are merged too")

	gl := yamlDocs(t, "../../examples/ci/gitlab-ci-sharded.yml")[0]
	assert.Equal(t, 4, gl["drills"].(map[string]any)["parallel"])
	assert.Equal(t, "always", gl["merge-drills"].(map[string]any)["when"])

	k8s := yamlDocs(t, "../../examples/k8s/indexed-job.yaml")
	var job map[string]any
	for _, d := range k8s {
		if d["kind"] == "Job" {
			job = d
		}
	}
	require.NotNil(t, job)
	spec := job["spec"].(map[string]any)
	assert.Equal(t, "Indexed", spec["completionMode"])
	assert.Equal(t, 4, spec["completions"])
	container := spec["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	assert.Contains(t, container["args"].([]any)[0], "JOB_COMPLETION_INDEX")
	assert.Equal(t, map[string]any{"name": "SHARDS", "value": "4"}, container["env"].([]any)[0], "SHARDS matches completions")
	mergeJob := yamlDocs(t, "../../examples/k8s/merge-job.yaml")[0]
	cmdLine := mergeJob["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["command"].([]any)
	shards := 0
	for _, a := range cmdLine {
		if strings.HasPrefix(a.(string), "/reports/shard-") {
			shards++
		}
	}
	assert.Equal(t, 4, shards, "the merge job lists every shard")
}

func TestShellWords(t *testing.T) {
	assert.Equal(t, []string{"run", "--shard", "$k/$SHARDS", "--report-dir", "/r/shard-$k", "x/"},
		shellWords(`run --shard "$k/$SHARDS" --report-dir "/r/shard-$k" x/ || true`))
	assert.Equal(t, [][]string{{"report", "pdf", "out"}}, opsdrillCommands("  bin/opsdrill report pdf out; echo\n"))
}
