package image

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func buildScript(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"build.sh"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return strings.TrimSpace(stderr.String()), err
	}
	return strings.TrimSpace(string(out)), nil
}

// The Go code and build.sh must agree on the tag, or the lab would ask for
// an image the build never produces.
func TestRefMatchesBuildScript(t *testing.T) {
	got, err := buildScript(t, nil, "--print-tag")
	require.NoError(t, err, got)
	assert.Equal(t, Ref(), got)
	assert.Regexp(t, `^opsdrill-lab:[0-9a-f]{12}$`, Ref())
}

func TestPackagesHaveWhatTheLabNeeds(t *testing.T) {
	pkgs := Packages()
	for _, p := range []string{
		"mariadb-server", "mariadb-client", "strongswan-swanctl", "charon-systemd",
		"libcharon-extra-plugins", "iproute2", "iptables", "nftables", "iputils-ping",
		"netcat-openbsd", "sane-utils", "oathtool", "dnsmasq", "ca-certificates",
	} {
		assert.Contains(t, pkgs, p)
	}
	assert.NotContains(t, pkgs, "python3")
	for _, p := range pkgs {
		assert.NotContains(t, p, " ", "one package per line")
	}
}

// TestMirrorFromAptSources feeds build.sh apt configurations in both formats
// and checks which mirror it picks. The URLs are placeholders; nothing is
// fetched.
func TestMirrorFromAptSources(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		env     []string
		want    string
		wantErr string
	}{
		{
			name: "deb822 skips security and third-party sources",
			files: map[string]string{
				"sources.list.d/nodesource.sources": "Types: deb\nURIs: https://third-party.example/node\nSuites: nodistro\nComponents: main\n",
				"sources.list.d/debian.sources": `# comment
Types: deb
URIs: http://security.mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----
`,
			},
			want: "http://mirror.example/debian",
		},
		{
			name: "deb822 disabled stanza and deb-src only are skipped",
			files: map[string]string{
				"sources.list.d/a.sources": "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\nTypes: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://on.example/debian\nSuites: trixie\n",
			},
			want: "http://on.example/debian",
		},
		{
			name: "one-line sources.list with options",
			files: map[string]string{
				"sources.list": "# deb http://commented.example/debian bookworm main\ndeb-src http://src.example/debian bookworm main\ndeb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://oneline.example/debian/ bookworm main\n",
			},
			want: "http://oneline.example/debian/",
		},
		{
			name: "deb822 wins over one-line",
			files: map[string]string{
				"sources.list":               "deb http://oneline.example/debian bookworm main\n",
				"sources.list.d/deb.sources": "Types: deb\nURIs: http://deb822.example/debian\nSuites: stable\n",
				"sources.list.d/extra.list":  "deb http://extra.example/debian bookworm main\n",
			},
			want: "http://deb822.example/debian",
		},
		{
			name:  "override",
			files: map[string]string{"sources.list": "deb http://oneline.example/debian bookworm main\n"},
			env:   []string{"OPSDRILL_LAB_MIRROR=http://override.example/debian"},
			want:  "http://override.example/debian",
		},
		{
			name:    "no Debian mirror",
			files:   map[string]string{"sources.list": "deb http://archive.example/ubuntu jammy main\n"},
			wantErr: "set OPSDRILL_LAB_MIRROR",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755))
			for name, content := range tt.files {
				require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
			}
			env := append([]string{"OPSDRILL_LAB_APT_ETC=" + dir, "OPSDRILL_LAB_MIRROR="}, tt.env...)
			got, err := buildScript(t, env, "--print-mirror")
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, got, tt.wantErr)
				return
			}
			require.NoError(t, err, got)
			assert.Equal(t, tt.want, got)
		})
	}
}
