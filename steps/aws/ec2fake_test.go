package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// fakeEC2 is a local endpoint speaking the EC2 Query API as far as
// DescribeVpnConnections goes: form-encoded POST in, XML out, errors in
// EC2's <Response><Errors> envelope. It checks the SigV4 signature against
// its own credentials with the SDK's signer, so a wrong secret is refused
// the way AWS refuses it.
type fakeEC2 struct {
	accessKey, secretKey, region string

	mu        sync.Mutex
	conn      vpnConn
	throttles int    // answer this many requests with RequestLimitExceeded first
	failWith  string // answer every request with this error code
	requests  []url.Values
	srv       *httptest.Server
}

type vpnConn struct {
	ID, State string
	Tunnels   []tunnelTelemetry
}

type tunnelTelemetry struct {
	IP, Status, Message string
	Changed             time.Time
	Routes              int
}

func newFakeEC2(t *testing.T) *fakeEC2 {
	f := &fakeEC2{
		accessKey: "AKIAFAKEEC2TESTKEY01", secretKey: "fake-ec2-secret-key-for-tests-only", region: "ap-south-1",
		conn: vpnConn{ID: "vpn-0a1b2c3d4e5f60718", State: "available", Tunnels: []tunnelTelemetry{
			{IP: "203.0.113.11", Status: "UP", Message: "", Changed: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC), Routes: 1},
			{IP: "198.51.100.12", Status: "UP", Message: "", Changed: time.Date(2026, 11, 21, 9, 1, 0, 0, time.UTC), Routes: 1},
		}},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEC2) set(fn func(f *fakeEC2)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeEC2) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

var credentialRE = regexp.MustCompile(`Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]+)`)

func (f *fakeEC2) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, err := url.ParseQuery(string(body))
	if r.Method != http.MethodPost || err != nil {
		f.fail(w, http.StatusBadRequest, "InvalidRequest", "expected a form-encoded POST")
		return
	}
	f.mu.Lock()
	f.requests = append(f.requests, form)
	throttle := f.throttles > 0
	if throttle {
		f.throttles--
	}
	failWith, conn := f.failWith, f.conn
	f.mu.Unlock()

	if code, msg := f.checkSignature(r, body); code != "" {
		f.fail(w, http.StatusUnauthorized, code, msg)
		return
	}
	switch {
	case throttle:
		f.fail(w, http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded.")
		return
	case failWith != "":
		f.fail(w, http.StatusForbidden, failWith, "You are not authorized to perform this operation.")
		return
	case form.Get("Action") != "DescribeVpnConnections" || form.Get("Version") != "2016-11-15":
		f.fail(w, http.StatusBadRequest, "InvalidAction", "The action "+form.Get("Action")+" is not valid for this web service.")
		return
	}
	for k, vs := range form {
		if strings.HasPrefix(k, "VpnConnectionId.") && vs[0] != conn.ID {
			f.fail(w, http.StatusBadRequest, "InvalidVpnConnectionID.NotFound", fmt.Sprintf("The vpnConnection ID '%s' does not exist", vs[0]))
			return
		}
	}
	type telemetry struct {
		OutsideIPAddress   string `xml:"outsideIpAddress"`
		Status             string `xml:"status"`
		LastStatusChange   string `xml:"lastStatusChange"`
		StatusMessage      string `xml:"statusMessage"`
		AcceptedRouteCount int    `xml:"acceptedRouteCount"`
	}
	type item struct {
		ID         string      `xml:"vpnConnectionId"`
		State      string      `xml:"state"`
		Type       string      `xml:"type"`
		CGW        string      `xml:"customerGatewayId"`
		VGW        string      `xml:"vpnGatewayId"`
		StaticOnly bool        `xml:"options>staticRoutesOnly"`
		Routes     []string    `xml:"routes>item>destinationCidrBlock"`
		Telemetry  []telemetry `xml:"vgwTelemetry>item"`
	}
	type response struct {
		XMLName   xml.Name `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ DescribeVpnConnectionsResponse"`
		RequestID string   `xml:"requestId"`
		Items     []item   `xml:"vpnConnectionSet>item"`
	}
	it := item{ID: conn.ID, State: conn.State, Type: "ipsec.1", CGW: "cgw-0123456789abcdef0", VGW: "vgw-0f1e2d3c4b5a69788",
		StaticOnly: true, Routes: []string{"169.254.0.0/16"}}
	for _, t := range conn.Tunnels {
		it.Telemetry = append(it.Telemetry, telemetry{t.IP, t.Status, t.Changed.Format("2006-01-02T15:04:05.000Z"), t.Message, t.Routes})
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(response{RequestID: "7a62c49f-347e-4fc4-9331-6e8eEXAMPLE", Items: []item{it}})
}

// checkSignature verifies the request's SigV4 signature by signing the
// same request again with the fake's own secret.
func (f *fakeEC2) checkSignature(r *http.Request, body []byte) (code, msg string) {
	m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return "MissingAuthenticationToken", "Request is missing Authentication Token"
	}
	if m[1] != f.accessKey {
		return "AuthFailure", "AWS was not able to validate the provided access credentials"
	}
	if m[3] != f.region || m[4] != "ec2" {
		return "AuthFailure", "credential scope " + m[3] + "/" + m[4] + " is not " + f.region + "/ec2"
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return "IncompleteSignature", "X-Amz-Date is missing"
	}
	again, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	for _, h := range strings.Split(m[5], ";") {
		if h == "host" {
			continue
		}
		again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
	}
	again.ContentLength = r.ContentLength
	sum := sha256.Sum256(body)
	creds := awssdk.Credentials{AccessKeyID: f.accessKey, SecretAccessKey: f.secretKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, again, hex.EncodeToString(sum[:]), "ec2", f.region, when); err != nil {
		return "IncompleteSignature", err.Error()
	}
	if mm := credentialRE.FindStringSubmatch(again.Header.Get("Authorization")); mm == nil || mm[6] != m[6] {
		return "AuthFailure", "AWS was not able to validate the provided access credentials"
	}
	return "", ""
}

func (f *fakeEC2) fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>`, code, msg)
}
