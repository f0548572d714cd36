package dbsec

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// fakeAWS serves, on one local endpoint as LocalStack does, the slice of
// two AWS APIs db.at_rest uses, over their real wire protocols: RDS's
// Query protocol (form-encoded POST, XML answers, DescribeDBInstances and
// DescribeDBSnapshots with Marker pagination) and KMS's JSON 1.1 protocol
// (X-Amz-Target TrentService.DescribeKey). Every request's Signature
// Version 4 is checked by signing it again with the fake's credentials.
type fakeAWS struct {
	creds awssdk.Credentials
	srv   *httptest.Server

	mu        sync.Mutex
	instances map[string]fakeInstance
	snapshots []fakeSnapshot // of every instance, in pages of pageSize
	keys      map[string]fakeKey
	pageSize  int
	calls     []string
}

type fakeInstance struct {
	Encrypted bool
	KeyID     string
}

type fakeSnapshot struct {
	ID, Instance, KeyID, Type string
	Encrypted                 bool
}

type fakeKey struct {
	State    string
	Manager  string
	Deletion time.Time
}

func newFakeAWS(t *testing.T) *fakeAWS {
	f := &fakeAWS{
		creds:     awssdk.Credentials{AccessKeyID: "AKIAFAKEDBSECTEST001", SecretAccessKey: "fake-dbsec-secret-for-tests-only"},
		instances: map[string]fakeInstance{},
		keys:      map[string]fakeKey{},
		pageSize:  2,
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", f.creds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", f.creds.SecretAccessKey)
	t.Setenv("AWS_REGION", "ap-south-1")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return f
}

func (f *fakeAWS) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	service, err := f.verify(r, body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if service == "kms" || strings.HasPrefix(r.Header.Get("X-Amz-Target"), "TrentService.") {
		f.serveKMS(w, r, body, err)
		return
	}
	f.serveRDS(w, body, err)
}

// verify re-signs the request with the fake's credentials and compares.
func (f *fakeAWS) verify(r *http.Request, body []byte) (string, error) {
	auth := strings.TrimPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ")
	fields := map[string]string{}
	for part := range strings.SplitSeq(auth, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 {
		return "", fmt.Errorf("no signature")
	}
	if scope[0] != f.creds.AccessKeyID {
		return scope[3], fmt.Errorf("unknown access key")
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return scope[3], err
	}
	again, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	again.Host = r.Host
	again.ContentLength = int64(len(body))
	for name := range strings.SplitSeq(fields["SignedHeaders"], ";") {
		if name != "host" && name != "content-length" {
			again.Header[http.CanonicalHeaderKey(name)] = r.Header.Values(name)
		}
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(r.Context(), f.creds, again, hex.EncodeToString(sum[:]), scope[3], scope[2], at); err != nil {
		return scope[3], err
	}
	want := again.Header.Get("Authorization")
	if i := strings.Index(want, "Signature="); i < 0 || !hmac.Equal([]byte(want[i+len("Signature="):]), []byte(fields["Signature"])) {
		return scope[3], fmt.Errorf("signature mismatch")
	}
	return scope[3], nil
}

type xmlInstance struct {
	ID        string `xml:"DBInstanceIdentifier"`
	Status    string `xml:"DBInstanceStatus"`
	Encrypted bool   `xml:"StorageEncrypted"`
	KeyID     string `xml:"KmsKeyId,omitempty"`
}

type xmlSnapshot struct {
	ID        string `xml:"DBSnapshotIdentifier"`
	Instance  string `xml:"DBInstanceIdentifier"`
	Type      string `xml:"SnapshotType"`
	Encrypted bool   `xml:"Encrypted"`
	KeyID     string `xml:"KmsKeyId,omitempty"`
}

func (f *fakeAWS) serveRDS(w http.ResponseWriter, body []byte, sigErr error) {
	rdsError := func(status int, code, msg string) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>req-1</RequestId></ErrorResponse>`, code, msg)
	}
	if sigErr != nil {
		rdsError(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		return
	}
	form, _ := url.ParseQuery(string(body))
	action := form.Get("Action")
	f.calls = append(f.calls, action)
	var result any
	switch action {
	case "DescribeDBInstances":
		id := form.Get("DBInstanceIdentifier")
		inst, ok := f.instances[id]
		if !ok {
			rdsError(http.StatusNotFound, "DBInstanceNotFound", "DBInstance "+id+" not found.")
			return
		}
		result = struct {
			Instances []xmlInstance `xml:"DBInstances>DBInstance"`
		}{[]xmlInstance{{ID: id, Status: "available", Encrypted: inst.Encrypted, KeyID: inst.KeyID}}}
	case "DescribeDBSnapshots":
		var mine []fakeSnapshot
		for _, s := range f.snapshots {
			if s.Instance == form.Get("DBInstanceIdentifier") {
				mine = append(mine, s)
			}
		}
		start := 0
		fmt.Sscan(form.Get("Marker"), &start)
		end := min(start+f.pageSize, len(mine))
		page := struct {
			Snapshots []xmlSnapshot `xml:"DBSnapshots>DBSnapshot"`
			Marker    string        `xml:"Marker,omitempty"`
		}{}
		for _, s := range mine[start:end] {
			page.Snapshots = append(page.Snapshots, xmlSnapshot{ID: s.ID, Instance: s.Instance, Type: s.Type, Encrypted: s.Encrypted, KeyID: s.KeyID})
		}
		if end < len(mine) {
			page.Marker = fmt.Sprint(end)
		}
		result = page
	default:
		rdsError(http.StatusBadRequest, "InvalidAction", "not served by the fake")
		return
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<%sResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">`, action)
	enc := xml.NewEncoder(&b)
	_ = enc.EncodeElement(result, xml.StartElement{Name: xml.Name{Local: action + "Result"}})
	fmt.Fprintf(&b, "<ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata></%sResponse>", action)
	w.Header().Set("Content-Type", "text/xml")
	w.Write(b.Bytes())
}

func (f *fakeAWS) serveKMS(w http.ResponseWriter, r *http.Request, body []byte, sigErr error) {
	kmsError := func(status int, typ, msg string) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
	}
	if sigErr != nil {
		kmsError(http.StatusBadRequest, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided.")
		return
	}
	target := r.Header.Get("X-Amz-Target")
	f.calls = append(f.calls, target)
	if target != "TrentService.DescribeKey" || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
		kmsError(http.StatusBadRequest, "UnknownOperationException", target)
		return
	}
	var in struct{ KeyId string }
	if err := json.Unmarshal(body, &in); err != nil {
		kmsError(http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	k, ok := f.keys[in.KeyId]
	if !ok {
		kmsError(http.StatusBadRequest, "NotFoundException", "Key '"+in.KeyId+"' does not exist")
		return
	}
	meta := map[string]any{"KeyId": in.KeyId, "Arn": in.KeyId, "KeyState": k.State, "Enabled": k.State == "Enabled",
		"KeyManager": k.Manager, "KeyUsage": "ENCRYPT_DECRYPT", "CreationDate": 1.7e9}
	if !k.Deletion.IsZero() {
		meta["DeletionDate"] = float64(k.Deletion.Unix())
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(map[string]any{"KeyMetadata": meta})
}
