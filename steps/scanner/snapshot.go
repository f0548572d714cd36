package scanner

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"strings"
)

// maxFileBytes bounds what is read of one file: sysfs attributes and SANE
// config files are small; anything bigger is not what the step expects.
const maxFileBytes = 64 << 10

// snapshot is what the step read of a host's files in one go: the files
// its globs matched and which of the folders it asked about exist.
type snapshot struct {
	Files map[string][]byte
	Dirs  map[string]bool
}

func newSnapshot() *snapshot {
	return &snapshot{Files: map[string][]byte{}, Dirs: map[string]bool{}}
}

// request lists what to read: Dirs are checked for existence, Globs are
// expanded (shell globbing, '*' skips dot files) and the regular, readable
// files they match are read, up to maxFileBytes each.
type request struct {
	Dirs  []string
	Globs []string
}

// dumpScript reads a request on a remote host with POSIX sh and coreutils
// only, so any Linux host will do. Arguments are "d:PATH" (a folder) or
// "g:GLOB". Each result is one line: "D <base64 path>" for a folder that
// exists, "F <base64 path> <base64 content>" for a file; base64 keeps any
// name and content on one line. IFS is empty so a glob expands without
// being split at spaces. 65536 is maxFileBytes.
const dumpScript = `IFS=
for a in "$@"; do
  case $a in
  d:*) d=${a#d:}; [ -d "$d" ] && printf 'D %s\n' "$(printf %s "$d" | base64 -w0)" ;;
  g:*) for f in ${a#g:}; do
      [ -f "$f" ] && [ -r "$f" ] || continue
      printf 'F %s %s\n' "$(printf %s "$f" | base64 -w0)" "$(head -c 65536 "$f" | base64 -w0)"
    done ;;
  esac
done
`

// dumpArgs returns the arguments of dumpScript for r.
func dumpArgs(r request) []string {
	var args []string
	for _, d := range r.Dirs {
		args = append(args, "d:"+d)
	}
	for _, g := range r.Globs {
		args = append(args, "g:"+g)
	}
	return args
}

// parseDump reads dumpScript's output.
func parseDump(out string) (*snapshot, error) {
	s := newSnapshot()
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 4*maxFileBytes)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Split(line, " ")
		switch {
		case f[0] == "D" && len(f) == 2:
			p, err := base64.StdEncoding.DecodeString(f[1])
			if err != nil || len(p) == 0 {
				return nil, fmt.Errorf("file listing line %d: bad folder name", n)
			}
			s.Dirs[string(p)] = true
		case f[0] == "F" && len(f) == 3:
			p, err := base64.StdEncoding.DecodeString(f[1])
			if err != nil || len(p) == 0 {
				return nil, fmt.Errorf("file listing line %d: bad file name", n)
			}
			content, err := base64.StdEncoding.DecodeString(f[2])
			if err != nil {
				return nil, fmt.Errorf("file listing line %d: bad content of %q", n, p)
			}
			if len(content) > maxFileBytes {
				content = content[:maxFileBytes]
			}
			s.Files[string(p)] = content
		default:
			return nil, fmt.Errorf("file listing line %d: unexpected %.40q", n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("file listing: %w", err)
	}
	return s, nil
}
