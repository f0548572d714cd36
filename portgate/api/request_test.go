package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseOpenRequest(t *testing.T) {
	good := OpenRequest{User: "alice", Code: "123456", Port: 22}
	cases := []struct {
		name    string
		body    string
		want    OpenRequest
		wantErr string // substring; the field name comes first
	}{
		{"minimal", `{"user":"alice","code":"123456","port":22}`, good, ""},
		{"all fields", `{"user":"a.b@c-d_e","code":"12345678","port":65535,"ip":"192.0.2.7","duration":"90s"}`,
			OpenRequest{User: "a.b@c-d_e", Code: "12345678", Port: 65535, IP: netip.MustParseAddr("192.0.2.7"), Duration: 90 * time.Second}, ""},
		{"second factor", `{"user":"alice","code":"12345678","password":"p:w \"x\"","port":22}`,
			OpenRequest{User: "alice", Code: "12345678", Password: `p:w "x"`, Port: 22}, ""},
		{"password number", `{"user":"alice","code":"123456","password":7,"port":22}`, OpenRequest{}, "password: must be a string"},
		{"whitespace", " {\n\"port\" : 22 , \"code\":\"123456\",\"user\":\"alice\"}\n", good, ""},
		{"mapped ipv4", `{"user":"alice","code":"123456","port":22,"ip":"::ffff:192.0.2.7"}`,
			OpenRequest{User: "alice", Code: "123456", Port: 22, IP: netip.MustParseAddr("192.0.2.7")}, ""},
		{"ipv6", `{"user":"alice","code":"123456","port":22,"ip":"2001:db8::7"}`,
			OpenRequest{User: "alice", Code: "123456", Port: 22, IP: netip.MustParseAddr("2001:db8::7")}, ""},

		{"empty", ``, OpenRequest{}, "body must be a JSON object"},
		{"array", `[1]`, OpenRequest{}, "body must be a JSON object"},
		{"trailing", `{"user":"alice","code":"123456","port":22} {}`, OpenRequest{}, "unexpected data after"},
		{"unknown field", `{"user":"alice","code":"123456","port":22,"admin":true}`, OpenRequest{}, `"admin": unknown field`},
		{"duplicate", `{"user":"alice","user":"bob","code":"123456","port":22}`, OpenRequest{}, "user: given twice"},
		{"no user", `{"code":"123456","port":22}`, OpenRequest{}, "user: required"},
		{"bad user", `{"user":"al ice","code":"123456","port":22}`, OpenRequest{}, "user: required"},
		{"user number", `{"user":7,"code":"123456","port":22}`, OpenRequest{}, "user: must be a string"},
		{"no code", `{"user":"alice","port":22}`, OpenRequest{}, "code: required"},
		{"short code", `{"user":"alice","code":"12345","port":22}`, OpenRequest{}, "code: required: 6 to 8 digits"},
		{"code number", `{"user":"alice","code":123456,"port":22}`, OpenRequest{}, "code: must be a string"},
		{"no port", `{"user":"alice","code":"123456"}`, OpenRequest{}, "port: required"},
		{"port zero", `{"user":"alice","code":"123456","port":0}`, OpenRequest{}, "port: must be an integer from 1 to 65535"},
		{"port big", `{"user":"alice","code":"123456","port":65536}`, OpenRequest{}, "port: must be an integer"},
		{"port string", `{"user":"alice","code":"123456","port":"22"}`, OpenRequest{}, "port: must be an integer"},
		{"port float", `{"user":"alice","code":"123456","port":22.0}`, OpenRequest{}, "port: must be an integer"},
		{"port exp", `{"user":"alice","code":"123456","port":2e1}`, OpenRequest{}, "port: must be an integer"},
		{"port negative", `{"user":"alice","code":"123456","port":-22}`, OpenRequest{}, "port: must be an integer"},
		{"port leading zero", `{"user":"alice","code":"123456","port":022}`, OpenRequest{}, "port:"},
		{"ip prefix", `{"user":"alice","code":"123456","port":22,"ip":"192.0.2.0/24"}`, OpenRequest{}, "ip: not an IP address"},
		{"ip zone", `{"user":"alice","code":"123456","port":22,"ip":"fe80::1%eth0"}`, OpenRequest{}, "ip: zones are not allowed"},
		{"ip any", `{"user":"alice","code":"123456","port":22,"ip":"0.0.0.0"}`, OpenRequest{}, "ip: 0.0.0.0 is not a unicast host address"},
		{"ip loopback", `{"user":"alice","code":"123456","port":22,"ip":"127.0.0.1"}`, OpenRequest{}, "not a unicast host address"},
		{"ip multicast", `{"user":"alice","code":"123456","port":22,"ip":"224.0.0.1"}`, OpenRequest{}, "not a unicast host address"},
		{"ip broadcast", `{"user":"alice","code":"123456","port":22,"ip":"255.255.255.255"}`, OpenRequest{}, "not a unicast host address"},
		{"ip spaces", `{"user":"alice","code":"123456","port":22,"ip":" 192.0.2.7"}`, OpenRequest{}, "ip: not an IP address"},
		{"duration bad", `{"user":"alice","code":"123456","port":22,"duration":"5 minutes"}`, OpenRequest{}, "duration: not a duration"},
		{"duration number", `{"user":"alice","code":"123456","port":22,"duration":300}`, OpenRequest{}, "duration: must be a string"},
		{"duration tiny", `{"user":"alice","code":"123456","port":22,"duration":"500ms"}`, OpenRequest{}, "duration: must be from 1s"},
		{"duration fraction", `{"user":"alice","code":"123456","port":22,"duration":"1.5s"}`, OpenRequest{}, "whole number of seconds"},
		{"too big", `{"user":"` + strings.Repeat("a", MaxBody) + `"}`, OpenRequest{}, "body larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseOpenRequest([]byte(c.body))
			if c.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.wantErr)
				var br *BadRequest
				assert.ErrorAs(t, err, &br)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestParseErrorsNeverQuoteCodes(t *testing.T) {
	for _, body := range []string{
		`{"user":"alice","code":"98765x","port":22}`,
		`{"user":"alice","code":987654,"port":22}`,
		`{"user":"alice","code":["987654"],"port":22}`,
		`{"user":"alice","code":"9876543210","port":22}`,
	} {
		_, err := ParseOpenRequest([]byte(body))
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "98765", body)
	}
}

func TestParseAuthorization(t *testing.T) {
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	tok := strings.Repeat("A", 43)
	for _, c := range []struct {
		h       string
		want    Credentials
		wantErr bool
	}{
		{"Bearer " + tok, Credentials{Token: tok}, false},
		{"bearer " + tok, Credentials{Token: tok}, false},
		{basic("alice:123456"), Credentials{User: "alice", Code: "123456"}, false},
		{basic("alice:12345678:pass:word"), Credentials{User: "alice", Code: "12345678", Password: "pass:word"}, false},
		{"Bearer", Credentials{}, true},
		{"Bearer short", Credentials{}, true},
		{"Bearer " + tok + "!", Credentials{}, true},
		{basic("alice"), Credentials{}, true},
		{basic("alice:12345x"), Credentials{}, true},
		{basic("al ice:123456"), Credentials{}, true},
		{"Basic !!!", Credentials{}, true},
		{"Digest x", Credentials{}, true},
	} {
		got, err := ParseAuthorization(c.h)
		if c.wantErr {
			assert.Error(t, err, c.h)
			continue
		}
		require.NoError(t, err, c.h)
		assert.Equal(t, c.want, got)
	}
}

func TestParseForm(t *testing.T) {
	v, err := ParseForm([]byte("pw=secret%20pass&ipaddr=192.0.2.7"))
	require.NoError(t, err)
	assert.Equal(t, "secret pass", v.Get("pw"))
	for body, want := range map[string]string{
		"ipaddr=192.0.2.7":             "pw: required",
		"pw=a&pw=b":                    "pw: given twice",
		"pw=a&port=22":                 `"port": unknown field`,
		"pw=a&ipaddr=%zz":              "malformed form",
		strings.Repeat("x", MaxBody+1): "body larger than",
	} {
		_, err := ParseForm([]byte(body))
		require.Error(t, err, body)
		assert.Contains(t, err.Error(), want)
	}
}

// FuzzParseOpenRequest feeds arbitrary bodies to the request parser: it
// must never panic, and whatever it accepts must satisfy every rule and
// survive a round trip through JSON.
func FuzzParseOpenRequest(f *testing.F) {
	for _, s := range []string{
		`{"user":"alice","code":"123456","port":22}`,
		`{"user":"a","code":"12345678","port":65535,"ip":"2001:db8::1","duration":"1h"}`,
		`{"user":"alice","code":"123456","port":22,"ip":"::ffff:10.0.0.1","duration":"90s"}`,
		`{"user":"alice","user":"bob"}`,
		`{"port":1e2}`,
		`{"port":"22"}`,
		`{"ip":"fe80::1%lo"}`,
		`[]`,
		`{}{}`,
		`{"user":"\u0061lice","code":"123456","port":22}`,
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseOpenRequest(body)
		if err != nil {
			var br *BadRequest
			if !errors.As(err, &br) {
				t.Fatalf("error is not a *BadRequest: %v", err)
			}
			return
		}
		if !userRE.MatchString(r.User) || !codeRE.MatchString(r.Code) || r.Port == 0 {
			t.Fatalf("accepted an invalid request: %+v", r)
		}
		if r.IP.IsValid() {
			if r.IP.Zone() != "" || r.IP.Is4In6() || r.IP.IsLoopback() || r.IP.IsMulticast() || r.IP.IsUnspecified() {
				t.Fatalf("accepted a bad address: %v", r.IP)
			}
		}
		if r.Duration != 0 && (r.Duration < time.Second || r.Duration > 168*time.Hour || r.Duration%time.Second != 0) {
			t.Fatalf("accepted a bad duration: %v", r.Duration)
		}
		m := map[string]any{"user": r.User, "code": r.Code, "port": r.Port}
		if r.IP.IsValid() {
			m["ip"] = r.IP.String()
		}
		if r.Duration != 0 {
			m["duration"] = r.Duration.String()
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseOpenRequest(b)
		if err != nil || r2 != r {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", r, b, r2, err)
		}
	})
}

// FuzzParseAuthorization: no panic, and accepted credentials are well
// formed.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("Bearer " + strings.Repeat("x", 43))
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("alice:123456")))
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("alice:12:34")))
	f.Add("Bearer  ")
	f.Fuzz(func(t *testing.T, h string) {
		c, err := ParseAuthorization(h)
		if err != nil {
			return
		}
		switch {
		case c.Token != "":
			if !tokenRE.MatchString(c.Token) || c.User != "" || c.Code != "" {
				t.Fatalf("bad bearer credentials: %+v", c)
			}
		case !userRE.MatchString(c.User) || !codeRE.MatchString(c.Code):
			t.Fatalf("bad basic credentials: %+v", c)
		}
	})
}

func TestParseProto(t *testing.T) {
	r, err := ParseOpenRequest([]byte(`{"user":"alice","code":"123456","port":3389,"proto":"udp"}`))
	require.NoError(t, err)
	assert.Equal(t, "udp", r.Proto)
	_, err = ParseOpenRequest([]byte(`{"user":"alice","code":"123456","port":3389,"proto":"sctp"}`))
	assert.EqualError(t, err, "proto: must be tcp or udp")
}
