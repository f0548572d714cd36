package vpn

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return string(b)
}

// The .pretty files are swanctl 5.9.8's output in the lab with the tunnel
// of the fixture up.
func TestParsePrettySAs(t *testing.T) {
	top := parsePretty(readTestdata(t, "list-sas.pretty"))
	require.Len(t, top, 2)
	assert.Equal(t, "list-sa event", top[0].Name)
	assert.Equal(t, "list-sas reply", top[1].Name)
	sa := top[0].Sections[0]
	assert.Equal(t, "aws-tunnel-1", sa.Name)
	assert.Equal(t, "ESTABLISHED", sa.Values["state"])
	assert.Equal(t, "AES_CBC", sa.Values["encr-alg"])
	children := sa.Section("child-sas").Sections
	require.Len(t, children, 2)
	assert.Equal(t, "aws-tunnel-1-inside", children[0].Values["name"])
	assert.Equal(t, "INSTALLED", children[0].Values["state"])
	assert.Regexp(t, `^[0-9a-f]{8}$`, children[0].Values["spi-in"])
	assert.Equal(t, []string{"169.254.21.44/30"}, children[1].Lists["local-ts"])
	assert.Equal(t, []string{"172.28.0.0/16"}, children[1].Lists["remote-ts"])
	assert.Nil(t, sa.Section("nothing"))

	sas := sasFromPretty(readTestdata(t, "list-sas.pretty"))
	require.Len(t, sas, 1)
	assert.Equal(t, "aws-tunnel-1-vpc", sas[0].Children[1].name())
	assert.Equal(t, "AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024", ikeAlgorithms(sas[0].Values))
	assert.Equal(t, "ESP:AES_CBC-128/HMAC_SHA1_96/MODP_1024", childAlgorithms(sas[0].Children[0].Values))
}

func TestParsePrettyConns(t *testing.T) {
	conns := connsFromPretty(readTestdata(t, "list-conns.pretty"))
	require.Len(t, conns, 1)
	assert.Equal(t, conn{Name: "aws-tunnel-1", Children: []string{"aws-tunnel-1-inside", "aws-tunnel-1-vpc"}}, conns[0])
	assert.Empty(t, connsFromPretty("list-conns reply {\n}\n"))
	assert.Empty(t, parsePretty("garbage\n}\n}\nkey = value\n"))
}

func TestFailureReasons(t *testing.T) {
	tests := []struct {
		log, reason, line string
	}{
		{"initiate-psk-mismatch.log", "pre-shared key mismatch", "[ENC] invalid HASH_V1 payload length, decryption failed?"},
		{"initiate-ike-no-proposal.log", "NO_PROPOSAL_CHOSEN): the IKE or ESP algorithms or groups differ; refused for the IKE_SA (phase 1: IKE proposal)", "[IKE] received NO_PROPOSAL_CHOSEN error notify"},
		{"initiate-esp-no-proposal.log", "refused for the CHILD_SA (phase 2: ESP proposal or PFS group)", "[IKE] received NO_PROPOSAL_CHOSEN error notify"},
		{"initiate-no-route.log", "no address in the local traffic selector", "[KNL] error installing route with policy 169.254.21.44/30 === 172.28.0.0/16 out"},
		{"initiate-no-answer.log", "no answer from the peer (peer not responding)", "[IKE] establishing IKE_SA failed, peer not responding"},
	}
	for _, tt := range tests {
		t.Run(tt.log, func(t *testing.T) {
			reason, lines := failureReason(readTestdata(t, tt.log))
			assert.Contains(t, reason, tt.reason)
			assert.Contains(t, lines, tt.line)
		})
	}
	reason, lines := failureReason("initiate completed successfully\n")
	assert.Empty(t, reason)
	assert.Empty(t, lines)
}

func TestSwanctlHelpers(t *testing.T) {
	assert.Equal(t, "", socketURI(""))
	assert.Equal(t, "unix:///var/run/charon.vici", socketURI("/var/run/charon.vici"))
	assert.Equal(t, "tcp://10.0.0.1:4502", socketURI("tcp://10.0.0.1:4502"))
	assert.Equal(t, "a\nb", dropPluginNoise("plugin 'ldap': failed to load - ldap_plugin_create not found\na\nb"))
	assert.Equal(t, "b; c", lastLines("a\n\nb\n c \n", 2))
	assert.Equal(t, "(no output)", lastLines(" \n", 2))
	assert.Equal(t, "this machine", hostName(""))
	assert.Equal(t, "lab:cgw", hostName("lab:cgw"))
}
