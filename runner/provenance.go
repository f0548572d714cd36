package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/steps/host"
)

// currentUser names the account running opsdrill: its name from the user
// database (root, not 0), else the environment, and its uid.
func currentUser() (name, uid string) {
	uid = fmt.Sprint(os.Getuid())
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username, uid
	}
	for _, k := range []string{"USER", "LOGNAME", "USERNAME"} {
		if v := os.Getenv(k); v != "" {
			return v, uid
		}
	}
	return uid, uid
}

// HashFile returns path with the SHA-256 of its content, for the report's
// list of input files.
func HashFile(path string) (reports.FileRef, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return reports.FileRef{}, err
	}
	sum := sha256.Sum256(data)
	return reports.FileRef{Path: path, SHA256: hex.EncodeToString(sum[:])}, nil
}

// HashLabVars stands for the vars an in-process lab (`run --lab`) gave the
// run, which have no file: Path names the lab, SHA256 is of the vars as
// canonical JSON (keys sorted), secrets left out, so two runs against
// labs that gave the same vars show the same hash.
func HashLabVars(labID string, vars map[string]any, secretsKey string) (reports.FileRef, error) {
	pub := make(map[string]any, len(vars))
	for k, v := range vars {
		if k != secretsKey {
			pub[k] = v
		}
	}
	data, err := json.Marshal(pub) // encoding/json sorts map keys
	if err != nil {
		return reports.FileRef{}, fmt.Errorf("lab %s vars: %w", labID, err)
	}
	sum := sha256.Sum256(data)
	return reports.FileRef{Path: "lab:" + labID + " (vars of the lab this run brought up)", SHA256: hex.EncodeToString(sum[:])}, nil
}

// gitRefs places each file in the git repository it lives in, if any:
// the commit checked out and whether the file differs from it. It asks
// the git binary, twice per repository whatever the number of files, and
// gives up quietly on a file it cannot place (no git, not a repository,
// a repository git refuses to read). The runner calls it beside the run,
// not in its way.
func gitRefs(ctx context.Context, files []string) map[string]*reports.GitRef {
	out := map[string]*reports.GitRef{}
	if _, err := exec.LookPath("git"); err != nil {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	git := func(dir string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
		b, err := cmd.Output()
		return string(b), err
	}
	type repo struct {
		top, commit string
		files       map[string]string // path inside the repository -> file as given
	}
	repos := map[string]*repo{}
	dirTop := map[string]string{}
	for _, file := range files {
		abs, err := filepath.Abs(file)
		if err != nil {
			continue
		}
		dir := filepath.Dir(abs)
		top, seen := dirTop[dir]
		if !seen {
			o, err := git(dir, "rev-parse", "--show-toplevel", "--verify", "HEAD")
			lines := strings.Fields(o)
			if err == nil && len(lines) == 2 {
				top = lines[0]
				if repos[top] == nil {
					repos[top] = &repo{top: top, commit: lines[1], files: map[string]string{}}
				}
			}
			dirTop[dir] = top
		}
		if top == "" {
			continue
		}
		if rel, err := filepath.Rel(top, abs); err == nil {
			repos[top].files[filepath.ToSlash(rel)] = file
		}
	}
	for _, r := range repos {
		paths := make([]string, 0, len(r.files))
		for rel := range r.files {
			paths = append(paths, rel)
		}
		sort.Strings(paths)
		states := map[string]string{}
		status, err := git(r.top, append([]string{"status", "--porcelain", "-z", "--untracked-files=all", "--"}, paths...)...)
		for _, entry := range strings.Split(status, "\x00") {
			if len(entry) > 3 {
				st := "modified"
				if strings.HasPrefix(entry, "??") {
					st = "untracked"
				}
				states[entry[3:]] = st
			}
		}
		for _, rel := range paths {
			ref := &reports.GitRef{Commit: r.commit, State: "clean", Path: rel}
			switch {
			case err != nil:
				ref.State = "unknown"
			case states[rel] != "":
				ref.State = states[rel]
			}
			out[r.files[rel]] = ref
		}
	}
	return out
}

// hostRecord notes which steps named which host (their host: and via:
// parameters) while the run goes on.
type hostRecord struct {
	mu    sync.Mutex
	steps map[string][]string // ref -> scenario/step
}

// hostParams are the parameters that name a host a step acts from or
// through.
var hostParams = []string{"host", "via"}

func (h *hostRecord) note(scenario, step string, with *yaml.Node) {
	if with == nil || with.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(with.Content); i += 2 {
		k, v := with.Content[i], with.Content[i+1]
		if v.Kind != yaml.ScalarNode || v.Value == "" || !contains(hostParams, k.Value) {
			continue
		}
		h.mu.Lock()
		if h.steps == nil {
			h.steps = map[string][]string{}
		}
		who := scenario + "/" + step
		if list := h.steps[v.Value]; len(list) == 0 || list[len(list)-1] != who {
			h.steps[v.Value] = append(list, who)
		}
		h.mu.Unlock()
	}
}

// hosts lists every host named by a step or opened by the run's host
// pool, with what the pool knows of it (address, host key).
func (h *hostRecord) hosts(ctx context.Context) []reports.HostRef {
	ids := host.FromContext(ctx).Identities()
	h.mu.Lock()
	refs := map[string][]string{}
	for ref, st := range h.steps {
		refs[ref] = st
	}
	h.mu.Unlock()
	for ref := range ids {
		if _, ok := refs[ref]; !ok {
			refs[ref] = nil
		}
	}
	out := make([]reports.HostRef, 0, len(refs))
	for ref, st := range refs {
		hr := reports.HostRef{Ref: ref, Steps: st}
		key := ref
		if r, err := host.Parse(ref); err == nil {
			hr.Transport = r.Scheme
			key = r.String()
		}
		if id, ok := ids[key]; ok {
			if id.Transport != "" {
				hr.Transport = id.Transport
			}
			hr.Address, hr.HostKey = id.Address, id.HostKey
		}
		out = append(out, hr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out
}
