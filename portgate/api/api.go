// Package api is portgate's HTTP interface.
//
//	POST   /v1/leases        {"user","code","port"[,"ip"][,"duration"]} -> 201 lease + token
//	GET    /v1/leases        Authorization: Bearer ADMIN | Basic user:code -> leases
//	GET    /v1/leases/{id}   Authorization: Bearer LEASE-TOKEN | ADMIN | Basic -> lease
//	DELETE /v1/leases/{id}   same credentials -> 200 {"closed":true}
//	GET    /healthz          -> 200 ok
//	POST   /openport         form pw=PASSWORD[&ipaddr=IP]: the seed runbook's
//	                         fixed-password page, only when enabled
//
// The source address of a request is the TCP peer's: portgate must face
// its clients directly (no proxy headers are trusted). Request bodies are
// parsed strictly (ParseOpenRequest); errors name the field and never echo a
// code, password or token.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/opsdrill/opsdrill/portgate/lease"
)

// Granted is an opened lease and the token that may close it.
type Granted struct {
	Lease lease.Lease
	Token string
}

// Service is what the API drives: the daemon.
type Service interface {
	Open(ctx context.Context, req OpenRequest, source netip.Addr) (Granted, error)
	OpenFixed(ctx context.Context, password string, ip netip.Addr, source netip.Addr) (Granted, error)
	List(ctx context.Context, cred Credentials, source netip.Addr) ([]lease.Lease, error)
	Get(ctx context.Context, id string, cred Credentials, source netip.Addr) (lease.Lease, error)
	Close(ctx context.Context, id string, cred Credentials, source netip.Addr) error
}

// Error codes of API errors.
const (
	CodeBadRequest     = "bad_request"
	CodeAuthFailed     = "auth_failed"
	CodeLockedOut      = "locked_out"
	CodeRateLimited    = "rate_limited"
	CodeTooManyLeases  = "too_many_leases"
	CodePortNotAllowed = "port_not_allowed"
	CodeIPNotAllowed   = "ip_not_allowed"
	CodeNotFound       = "not_found"
	CodeInternal       = "internal"
)

// Error is a refusal the caller may see.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Options tune the handler.
type Options struct {
	// FixedPassword enables POST /openport.
	FixedPassword bool
}

// NewHandler returns the API's HTTP handler.
func NewHandler(svc Service, opts Options) http.Handler {
	h := &handler{svc: svc}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/leases", h.open)
	mux.HandleFunc("GET /v1/leases", h.list)
	mux.HandleFunc("GET /v1/leases/{id}", h.get)
	mux.HandleFunc("DELETE /v1/leases/{id}", h.close)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	if opts.FixedPassword {
		mux.HandleFunc("POST /openport", h.openFixed)
	}
	return secureHeaders(mux)
}

type handler struct {
	svc Service
}

func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// source is the TCP peer's address.
func source(r *http.Request) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "cannot tell the source address"}
	}
	return ap.Addr().Unmap(), nil
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, bad("", "body larger than %d bytes", MaxBody)
	}
	if err != nil {
		return nil, bad("", "cannot read the body")
	}
	return b, nil
}

func (h *handler) open(w http.ResponseWriter, r *http.Request) {
	src, err := source(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		writeError(w, bad("Content-Type", "must be application/json"))
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	req, err := ParseOpenRequest(body)
	if err != nil {
		writeError(w, err)
		return
	}
	g, err := h.svc.Open(r.Context(), req, src)
	if err != nil {
		writeError(w, err)
		return
	}
	out := leaseJSON(g.Lease)
	out.Token = g.Token
	writeJSON(w, http.StatusCreated, out)
}

func isJSON(ct string) bool {
	return ct == "application/json" || len(ct) > 16 && ct[:16] == "application/json" && (ct[16] == ';' || ct[16] == ' ')
}

func (h *handler) credentials(r *http.Request) (Credentials, error) {
	a := r.Header.Get("Authorization")
	if a == "" {
		return Credentials{}, &Error{Status: http.StatusUnauthorized, Code: CodeAuthFailed, Message: "Authorization required: Bearer TOKEN or Basic user:code"}
	}
	return ParseAuthorization(a)
}

// caller reads who is asking: the source address and the credentials.
func (h *handler) caller(r *http.Request) (netip.Addr, Credentials, error) {
	src, err := source(r)
	if err != nil {
		return netip.Addr{}, Credentials{}, err
	}
	cred, err := h.credentials(r)
	return src, cred, err
}

// leaseCaller is caller plus the lease id of the path; a malformed id is
// answered like an unknown one.
func (h *handler) leaseCaller(r *http.Request) (string, netip.Addr, Credentials, error) {
	src, cred, err := h.caller(r)
	if err != nil {
		return "", src, cred, err
	}
	id := r.PathValue("id")
	if !ValidLeaseID(id) {
		return "", src, cred, notFound()
	}
	return id, src, cred, nil
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	src, cred, err := h.caller(r)
	if err != nil {
		writeError(w, err)
		return
	}
	ls, err := h.svc.List(r.Context(), cred, src)
	if err != nil {
		writeError(w, err)
		return
	}
	out := struct {
		Leases []LeaseJSON `json:"leases"`
	}{Leases: []LeaseJSON{}}
	for _, l := range ls {
		out.Leases = append(out.Leases, leaseJSON(l))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	id, src, cred, err := h.leaseCaller(r)
	if err != nil {
		writeError(w, err)
		return
	}
	l, err := h.svc.Get(r.Context(), id, cred, src)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, leaseJSON(l))
}

func (h *handler) close(w http.ResponseWriter, r *http.Request) {
	id, src, cred, err := h.leaseCaller(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := h.svc.Close(r.Context(), id, cred, src); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "closed": true})
}

func notFound() error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such lease"}
}

// openFixed serves the seed's form: pw, and optionally ipaddr.
func (h *handler) openFixed(w http.ResponseWriter, r *http.Request) {
	src, err := source(r)
	if err != nil {
		writeText(w, err)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		writeText(w, err)
		return
	}
	form, err := ParseForm(body)
	if err != nil {
		writeText(w, err)
		return
	}
	var ip netip.Addr
	if s := form.Get("ipaddr"); s != "" {
		if ip, err = ParseIP(s); err != nil {
			writeText(w, bad("ipaddr", "%v", err))
			return
		}
	}
	g, err := h.svc.OpenFixed(r.Context(), form.Get("pw"), ip, src)
	if err != nil {
		writeText(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "open: tcp/%d for %s until %s (lease %s)\n", g.Lease.Port, g.Lease.IP, g.Lease.Expires.UTC().Format(time.RFC3339), g.Lease.ID)
}

// ParseForm reads the fixed-password form strictly: only pw (required) and
// ipaddr, each at most once.
func ParseForm(body []byte) (url.Values, error) {
	if len(body) > MaxBody {
		return nil, bad("", "body larger than %d bytes", MaxBody)
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, bad("", "malformed form")
	}
	for k, vals := range v {
		if k != "pw" && k != "ipaddr" {
			return nil, bad(safeKey(k), "unknown field (known: pw, ipaddr)")
		}
		if len(vals) != 1 {
			return nil, bad(k, "given twice")
		}
	}
	if v.Get("pw") == "" {
		return nil, bad("pw", "required")
	}
	return v, nil
}

// LeaseJSON is a lease as the API shows it.
type LeaseJSON struct {
	ID          string `json:"id"`
	User        string `json:"user"`
	IP          string `json:"ip"`
	Source      string `json:"source"`
	Port        uint16 `json:"port"`
	Proto       string `json:"proto"`
	Created     string `json:"created"`
	Expires     string `json:"expires"`
	ExpiresUnix int64  `json:"expires_unix"`
	// ExpiresUnixMs has the millisecond the lease ends.
	ExpiresUnixMs int64  `json:"expires_unix_ms"`
	Token         string `json:"token,omitempty"`
}

func leaseJSON(l lease.Lease) LeaseJSON {
	src := ""
	if l.Source.IsValid() {
		src = l.Source.String()
	}
	return LeaseJSON{
		ID: l.ID, User: l.User, IP: l.IP.String(), Source: src, Port: l.Port, Proto: l.Protocol(),
		Created:       l.Created.UTC().Format(time.RFC3339Nano),
		Expires:       l.Expires.UTC().Format(time.RFC3339Nano),
		ExpiresUnix:   l.Expires.Unix(),
		ExpiresUnixMs: l.Expires.UnixMilli(),
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// asError maps an error to what the caller sees; anything unexpected is an
// internal error whose detail stays in the server's log.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var br *BadRequest
	if errors.As(err, &br) {
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: br.Error()}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error; see the portgate log"}
}

func writeError(w http.ResponseWriter, err error) {
	e := asError(err)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="portgate"`)
	}
	writeJSON(w, e.Status, map[string]string{"error": e.Code, "message": e.Message})
}

func writeText(w http.ResponseWriter, err error) {
	e := asError(err)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(e.Status)
	fmt.Fprintf(w, "denied: %s\n", e.Message)
}
