// Package rdsapi serves the slice of the Amazon RDS Query API a failover
// drill uses — DescribeDBInstances, RebootDBInstance, DescribeDBClusters
// and FailoverDBCluster — over the real wire protocol: form-encoded POSTs
// signed with Signature Version 4, answered in RDS's XML. The unmodified
// aws-sdk-go-v2 RDS client, pointed at it with BaseEndpoint, drives the
// lab exactly as it drives AWS.
//
// What the API acts on is a Backend: Memory, an in-memory Multi-AZ
// instance for tests of the client side, or Lab, which turns a reboot
// with failover into a real switchover of the lab's mariadb-pair. The lab
// runs Lab as a service of its own, cmd/lab-rdsapi on the pair's db-dns
// host; its URL and credentials are in the lab's vars.
//
//	srv, err := rdsapi.Start(rdsapi.NewMemory(), "ap-south-1")
//	defer srv.Close()
//	client := rds.New(rds.Options{Region: srv.Region, BaseEndpoint: &srv.URL, Credentials: srv.Credentials()})
package rdsapi

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// APIVersion is the RDS API version the SDK speaks.
const APIVersion = "2014-10-31"

const xmlns = "http://rds.amazonaws.com/doc/2014-10-31/"

// Instance is a DB instance as DescribeDBInstances reports it.
type Instance struct {
	ID          string
	Status      string // available, rebooting, ...
	Engine      string
	Version     string
	AZ          string
	SecondaryAZ string // the standby's zone (Multi-AZ instances)
	MultiAZ     bool
	Address     string // endpoint
	Port        int
	ClusterID   string
}

// Member is a DB cluster member.
type Member struct {
	InstanceID string
	Writer     bool
}

// Cluster is a DB cluster as DescribeDBClusters reports it.
type Cluster struct {
	ID       string
	Status   string // available, failing-over, ...
	Engine   string
	Endpoint string
	Port     int
	MultiAZ  bool
	Members  []Member
}

// Event is an RDS event as DescribeEvents reports it.
type Event struct {
	SourceID   string
	SourceType string // db-instance, db-cluster
	Message    string
	Categories []string // failover, availability, ...
	Date       time.Time
}

// Backend is what the API acts on.
type Backend interface {
	// Events returns the events of sourceID (all sources when empty) and
	// sourceType (all when empty) from start to end.
	Events(ctx context.Context, sourceID, sourceType string, start, end time.Time) ([]Event, error)
	// Instances returns the instance id, or all when id is empty.
	Instances(ctx context.Context, id string) ([]Instance, error)
	// Reboot starts a reboot (with failover to the standby when
	// forceFailover) and returns the instance as it is right after.
	Reboot(ctx context.Context, id string, forceFailover bool) (Instance, error)
	// Clusters returns the cluster id, or all when id is empty.
	Clusters(ctx context.Context, id string) ([]Cluster, error)
	// FailoverCluster starts a failover to target (any reader when
	// empty) and returns the cluster as it is right after.
	FailoverCluster(ctx context.Context, id, target string) (Cluster, error)
}

// Error is an API error: its Code is what the SDK's typed errors match
// (DBInstanceNotFound, InvalidDBInstanceState, ...).
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errors the backends return.
func errInstanceNotFound(id string) error {
	return &Error{Status: http.StatusNotFound, Code: "DBInstanceNotFound", Message: fmt.Sprintf("DBInstance %s not found.", id)}
}

func errClusterNotFound(id string) error {
	return &Error{Status: http.StatusNotFound, Code: "DBClusterNotFoundFault", Message: fmt.Sprintf("DBCluster %s not found.", id)}
}

func errInstanceState(id, status string) error {
	return &Error{Status: http.StatusBadRequest, Code: "InvalidDBInstanceState", Message: fmt.Sprintf("Instance %s is not in available state (%s).", id, status)}
}

func errClusterState(id, status string) error {
	return &Error{Status: http.StatusBadRequest, Code: "InvalidDBClusterStateFault", Message: fmt.Sprintf("DBCluster %s is not in available state (%s).", id, status)}
}

// Handler serves the API for one set of credentials.
type Handler struct {
	Backend Backend
	Creds   aws.Credentials
	// Now is the clock requests' signing time is checked against.
	Now func() time.Time
}

// ServeHTTP answers one Query API request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := newID()
	if r.Method != http.MethodPost {
		writeError(w, reqID, &Error{Status: http.StatusMethodNotAllowed, Code: "InvalidAction", Message: "use POST"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, reqID, &Error{Status: http.StatusBadRequest, Code: "MalformedQueryString", Message: err.Error()})
		return
	}
	if err := h.verify(r, body); err != nil {
		writeError(w, reqID, err)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		writeError(w, reqID, &Error{Status: http.StatusBadRequest, Code: "MalformedQueryString", Message: err.Error()})
		return
	}
	if v := form.Get("Version"); v != APIVersion {
		writeError(w, reqID, &Error{Status: http.StatusBadRequest, Code: "InvalidParameterValue", Message: fmt.Sprintf("unsupported API version %q", v)})
		return
	}
	action := form.Get("Action")
	ctx := r.Context()
	var result any
	switch action {
	case "DescribeDBInstances":
		var list []Instance
		list, err = h.Backend.Instances(ctx, form.Get("DBInstanceIdentifier"))
		result = describeInstancesResult{Instances: instancesXML(list)}
	case "RebootDBInstance":
		var inst Instance
		force := form.Get("ForceFailover") == "true"
		inst, err = h.Backend.Reboot(ctx, required(form, "DBInstanceIdentifier", &err), force)
		result = rebootResult{Instance: instanceXML(inst)}
	case "DescribeDBClusters":
		var list []Cluster
		list, err = h.Backend.Clusters(ctx, form.Get("DBClusterIdentifier"))
		result = describeClustersResult{Clusters: clustersXML(list)}
	case "DescribeEvents":
		var list []Event
		var start, end time.Time
		start, end, err = eventWindow(form, time.Now())
		if err == nil {
			list, err = h.Backend.Events(ctx, form.Get("SourceIdentifier"), form.Get("SourceType"), start, end)
		}
		result = describeEventsResult{Events: eventsXML(list)}
	case "FailoverDBCluster":
		var c Cluster
		c, err = h.Backend.FailoverCluster(ctx, required(form, "DBClusterIdentifier", &err), form.Get("TargetDBInstanceIdentifier"))
		result = failoverClusterResult{Cluster: clusterXML(c)}
	default:
		err = &Error{Status: http.StatusBadRequest, Code: "InvalidAction", Message: fmt.Sprintf("action %q is not served by the opsdrill lab", action)}
	}
	if err != nil {
		writeError(w, reqID, err)
		return
	}
	writeResult(w, action, result, reqID)
}

// required reads a mandatory parameter; a missing one sets *errp, unless
// an error is already there.
func required(form url.Values, name string, errp *error) string {
	v := form.Get(name)
	if v == "" && *errp == nil {
		*errp = &Error{Status: http.StatusBadRequest, Code: "MissingParameter", Message: fmt.Sprintf("The request must contain the parameter %s", name)}
	}
	return v
}

// verify checks the request's Signature Version 4 by signing it again
// with the expected credentials.
func (h *Handler) verify(r *http.Request, body []byte) error {
	denied := func(code, msg string) error {
		return &Error{Status: http.StatusForbidden, Code: code, Message: msg}
	}
	auth := r.Header.Get("Authorization")
	const algo = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(auth, algo) {
		return denied("MissingAuthenticationToken", "Request is missing Authentication Token")
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(strings.TrimPrefix(auth, algo), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[3] != "rds" || scope[4] != "aws4_request" {
		return denied("IncompleteSignature", "Credential scope is malformed")
	}
	if scope[0] != h.Creds.AccessKeyID {
		return denied("InvalidClientTokenId", "The security token included in the request is invalid.")
	}
	signedAt, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return denied("IncompleteSignature", "X-Amz-Date is missing or malformed")
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	if d := now().Sub(signedAt); d > 15*time.Minute || d < -15*time.Minute {
		return denied("SignatureDoesNotMatch", "Signature expired: the request's time is too far from the server's")
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	again, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	again.Host = r.Host
	// The signer signs Content-Length when the request has one: only when
	// the client signed it too (the Go SDK does, botocore does not).
	again.ContentLength = 0
	for name := range strings.SplitSeq(fields["SignedHeaders"], ";") {
		switch name {
		case "host":
		case "content-length":
			again.ContentLength = int64(len(body))
		default:
			again.Header[http.CanonicalHeaderKey(name)] = r.Header.Values(name)
		}
	}
	if err := v4.NewSigner().SignHTTP(r.Context(), h.Creds, again, hash, "rds", scope[2], signedAt); err != nil {
		return err
	}
	want := again.Header.Get("Authorization")
	i := strings.Index(want, "Signature=")
	if i < 0 || !hmac.Equal([]byte(want[i+len("Signature="):]), []byte(fields["Signature"])) {
		return denied("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
	}
	return nil
}

// eventWindow reads DescribeEvents' StartTime, EndTime (ISO 8601) and
// Duration (minutes; default 60, RDS's).
func eventWindow(form url.Values, now time.Time) (start, end time.Time, err error) {
	end = now
	if v := form.Get("EndTime"); v != "" {
		if end, err = time.Parse(time.RFC3339, v); err != nil {
			return start, end, &Error{Status: http.StatusBadRequest, Code: "InvalidParameterValue", Message: "EndTime: " + err.Error()}
		}
	}
	if v := form.Get("StartTime"); v != "" {
		if start, err = time.Parse(time.RFC3339, v); err != nil {
			return start, end, &Error{Status: http.StatusBadRequest, Code: "InvalidParameterValue", Message: "StartTime: " + err.Error()}
		}
		return start, end, nil
	}
	minutes := 60
	if v := form.Get("Duration"); v != "" {
		if _, err := fmt.Sscan(v, &minutes); err != nil || minutes < 0 {
			return start, end, &Error{Status: http.StatusBadRequest, Code: "InvalidParameterValue", Message: "Duration: " + v}
		}
	}
	return end.Add(-time.Duration(minutes) * time.Minute), end, nil
}

type eventXMLT struct {
	SourceID   string   `xml:"SourceIdentifier"`
	SourceType string   `xml:"SourceType"`
	Message    string   `xml:"Message"`
	Categories []string `xml:"EventCategories>EventCategory"`
	Date       string   `xml:"Date"`
}

type describeEventsResult struct {
	Events []eventXMLT `xml:"Events>Event"`
}

func eventsXML(list []Event) []eventXMLT {
	out := make([]eventXMLT, len(list))
	for i, e := range list {
		out[i] = eventXMLT{SourceID: e.SourceID, SourceType: e.SourceType, Message: e.Message, Categories: e.Categories,
			Date: e.Date.UTC().Format("2006-01-02T15:04:05.000Z")}
	}
	return out
}

// EventLog is a Backend's record of events, safe for concurrent use.
type EventLog struct {
	mu     sync.Mutex
	events []Event
}

// Add records an event.
func (l *EventLog) Add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// Select returns the events matching DescribeEvents' filters, oldest first.
func (l *EventLog) Select(sourceID, sourceType string, start, end time.Time) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.events {
		if (sourceID == "" || e.SourceID == sourceID) && (sourceType == "" || e.SourceType == sourceType) &&
			!e.Date.Before(start) && !e.Date.After(end) {
			out = append(out, e)
		}
	}
	return out
}

// RDS's messages for the events of a reboot with failover.
const (
	MsgFailoverStarted   = "Multi-AZ instance failover started."
	MsgRestarted         = "DB instance restarted"
	MsgFailoverCompleted = "Multi-AZ instance failover completed"
	MsgRebootRequested   = "DB instance shutdown"
)

type responseMetadata struct {
	XMLName   xml.Name `xml:"ResponseMetadata"`
	RequestID string   `xml:"RequestId"`
}

type endpointXML struct {
	Address string `xml:"Address"`
	Port    int    `xml:"Port"`
}

type instanceXMLT struct {
	ID          string       `xml:"DBInstanceIdentifier"`
	Status      string       `xml:"DBInstanceStatus"`
	Engine      string       `xml:"Engine,omitempty"`
	Version     string       `xml:"EngineVersion,omitempty"`
	AZ          string       `xml:"AvailabilityZone,omitempty"`
	SecondaryAZ string       `xml:"SecondaryAvailabilityZone,omitempty"`
	MultiAZ     bool         `xml:"MultiAZ"`
	ClusterID   string       `xml:"DBClusterIdentifier,omitempty"`
	Endpoint    *endpointXML `xml:"Endpoint,omitempty"`
}

type memberXML struct {
	InstanceID string `xml:"DBInstanceIdentifier"`
	Writer     bool   `xml:"IsClusterWriter"`
}

type clusterXMLT struct {
	ID       string      `xml:"DBClusterIdentifier"`
	Status   string      `xml:"Status"`
	Engine   string      `xml:"Engine,omitempty"`
	Endpoint string      `xml:"Endpoint,omitempty"`
	Port     int         `xml:"Port,omitempty"`
	MultiAZ  bool        `xml:"MultiAZ"`
	Members  []memberXML `xml:"DBClusterMembers>DBClusterMember"`
}

type describeInstancesResult struct {
	Instances []instanceXMLT `xml:"DBInstances>DBInstance"`
}

type rebootResult struct {
	Instance instanceXMLT `xml:"DBInstance"`
}

type describeClustersResult struct {
	Clusters []clusterXMLT `xml:"DBClusters>DBCluster"`
}

type failoverClusterResult struct {
	Cluster clusterXMLT `xml:"DBCluster"`
}

func instanceXML(i Instance) instanceXMLT {
	x := instanceXMLT{ID: i.ID, Status: i.Status, Engine: i.Engine, Version: i.Version, AZ: i.AZ,
		SecondaryAZ: i.SecondaryAZ, MultiAZ: i.MultiAZ, ClusterID: i.ClusterID}
	if i.Address != "" {
		x.Endpoint = &endpointXML{Address: i.Address, Port: i.Port}
	}
	return x
}

func instancesXML(list []Instance) []instanceXMLT {
	out := make([]instanceXMLT, len(list))
	for i, in := range list {
		out[i] = instanceXML(in)
	}
	return out
}

func clusterXML(c Cluster) clusterXMLT {
	x := clusterXMLT{ID: c.ID, Status: c.Status, Engine: c.Engine, Endpoint: c.Endpoint, Port: c.Port, MultiAZ: c.MultiAZ}
	for _, m := range c.Members {
		x.Members = append(x.Members, memberXML(m))
	}
	return x
}

func clustersXML(list []Cluster) []clusterXMLT {
	out := make([]clusterXMLT, len(list))
	for i, c := range list {
		out[i] = clusterXML(c)
	}
	return out
}

// writeResult writes <ActionResponse><ActionResult>…</ActionResult>
// <ResponseMetadata/></ActionResponse>.
func writeResult(w http.ResponseWriter, action string, result any, reqID string) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	fmt.Fprintf(&b, `<%sResponse xmlns="%s">`, action, xmlns)
	enc := xml.NewEncoder(&b)
	if err := enc.EncodeElement(result, xml.StartElement{Name: xml.Name{Local: action + "Result"}}); err != nil {
		writeError(w, reqID, err)
		return
	}
	if err := enc.Encode(responseMetadata{RequestID: reqID}); err != nil {
		writeError(w, reqID, err)
		return
	}
	fmt.Fprintf(&b, "</%sResponse>", action)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-RequestId", reqID)
	w.Write(b.Bytes())
}

type errorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

func writeError(w http.ResponseWriter, reqID string, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		ae = &Error{Status: http.StatusInternalServerError, Code: "InternalFailure", Message: err.Error()}
	}
	var resp errorResponse
	resp.Xmlns = xmlns
	resp.Error.Type = "Sender"
	if ae.Status >= 500 {
		resp.Error.Type = "Receiver"
	}
	resp.Error.Code, resp.Error.Message, resp.RequestID = ae.Code, ae.Message, reqID
	b, _ := xml.Marshal(resp)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-RequestId", reqID)
	w.WriteHeader(ae.Status)
	w.Write(append([]byte(xml.Header), b...))
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Server is a running API endpoint.
type Server struct {
	// URL is the BaseEndpoint to give the SDK.
	URL string
	// Region is the region to configure the SDK with.
	Region string

	creds aws.Credentials
	srv   *http.Server
	done  chan struct{}
}

// Start serves b on 127.0.0.1 (a free port) with fresh random
// credentials, which only this process knows.
func Start(b Backend, region string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rds api: %w", err)
	}
	creds := aws.Credentials{AccessKeyID: "AKIALAB" + strings.ToUpper(newID()[:13]), SecretAccessKey: newID() + newID(), Source: "opsdrill lab"}
	return Serve(ln, b, region, creds), nil
}

// Serve serves b on ln to requests signed with creds, until Close.
func Serve(ln net.Listener, b Backend, region string, creds aws.Credentials) *Server {
	s := &Server{
		URL:    "http://" + ln.Addr().String(),
		Region: region,
		creds:  creds,
		srv:    &http.Server{Handler: &Handler{Backend: b, Creds: creds}, ReadHeaderTimeout: 10 * time.Second},
		done:   make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s
}

// Credentials returns a provider of the server's credentials for the SDK.
func (s *Server) Credentials() aws.CredentialsProvider {
	c := s.creds
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return c, nil })
}

// Close stops serving.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
