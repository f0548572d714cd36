package port

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// Conn is where and how the opener is called; both steps embed it.
type Conn struct {
	Host        string        `yaml:"host" doc:"where the request is made from: local (default), ssh://[user@]name or lab:NAME; the opener lets in the address it sees"`
	Source      string        `yaml:"source" doc:"local IP address on that host to send from (as tcp.probe's source)"`
	CACert      string        `yaml:"ca_cert" doc:"PEM CA certificate that signed the opener's TLS certificate: a file on the host the request is made from (relative to the scenario when local)"`
	InsecureTLS bool          `yaml:"insecure_tls" doc:"do not verify the opener's TLS certificate (labs only)"`
	Timeout     time.Duration `yaml:"timeout" doc:"request timeout"`
}

func (c Conn) validate() error {
	if c.Timeout <= 0 {
		return fmt.Errorf("timeout: must be positive, got %s", c.Timeout)
	}
	if c.CACert != "" && c.InsecureTLS {
		return errors.New("ca_cert, insecure_tls: give one, not both")
	}
	if c.Source != "" {
		if _, err := netip.ParseAddr(c.Source); err != nil {
			return fmt.Errorf("source: %q is not an IP address", c.Source)
		}
	}
	return hostexec.Validate(c.Host)
}

func (c Conn) call(method, u string) call {
	return call{Method: method, URL: u, Host: c.Host, Source: c.Source, CACert: c.CACert, Insecure: c.InsecureTLS, Timeout: c.Timeout}
}

func (c Conn) from() string {
	where := c.Host
	if hostexec.IsLocal(c.Host) {
		where = "this machine"
	}
	if c.Source != "" {
		where += " (source " + c.Source + ")"
	}
	return where
}

// Open is port.open.
type Open struct {
	URL           string        `yaml:"url" required:"true" doc:"portgate's base URL (https://gate:8443); with mode: form, the page's URL; with driver: fwknop, spa://GATE[:PORT] (default port 62201)"`
	Mode          string        `yaml:"mode" doc:"portgate: portgate's API with a TOTP code; form: a password form like the seed's openport.php; fwknop: the same as driver: fwknop"`
	Driver        string        `yaml:"driver" doc:"portgate (default), form, or fwknop: a single packet authorization (SPA) sent with the real fwknop client and the user's key file; the same as mode"`
	KeyFile       string        `yaml:"key_file" doc:"fwknop: the user's fwknoprc (KEY_BASE64, HMAC_KEY_BASE64 ...) on the host the packet is sent from"`
	Stanza        string        `yaml:"stanza" doc:"fwknop: the named stanza of key_file to use (fwknop -n; default: its [default])"`
	WrongCreds    bool          `yaml:"wrong_credentials" doc:"send credentials that must be refused: portgate a code 40 time steps away, fwknop a packet under random keys"`
	Attempts      int           `yaml:"attempts" doc:"with wrong_credentials: send this many requests (a guessing attacker); outputs.throttled says whether the opener began refusing them unseen"`
	OpenWait      time.Duration `yaml:"open_wait" doc:"fwknop: how long to wait for the port to open after the packet (no answer comes): default 5s"`
	User          string        `yaml:"user" doc:"portgate: the user"`
	TOTP          `yaml:",inline"`
	Port          int               `yaml:"port" doc:"the port to open (required with mode: portgate)"`
	Proto         string            `yaml:"proto" doc:"portgate: tcp or udp (default: tcp when the gate allows it, else udp)"`
	IP            string            `yaml:"ip" doc:"the address to open for, when the opener lets callers name one (default: the caller's own)"`
	Duration      time.Duration     `yaml:"duration" doc:"portgate: lease length in whole seconds (default: the server's, 5m)"`
	Password      string            `yaml:"password" doc:"form: the password; portgate: the user's second factor, sent with the code"`
	PasswordField string            `yaml:"password_field" doc:"form: name of the password field (openport.php's is pw)"`
	IPField       string            `yaml:"ip_field" doc:"form: name of the address field, sent when ip is set (openport.php's is ipaddr)"`
	Fields        map[string]string `yaml:"fields" doc:"form: further fields to send"`
	SuccessMatch  string            `yaml:"success_match" doc:"form: regular expression a 2xx answer must match to count as opened"`
	Conn          `yaml:",inline"`
	Expect        string `yaml:"expect" doc:"opened, refused or any"`
	Close         bool   `yaml:"close" doc:"close a lease portgate granted at cleanup, with port.close"`

	// now is the clock codes are computed with; nil means time.Now.
	now func() time.Time
}

var (
	userRE  = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)
	fieldRE = regexp.MustCompile(`^[A-Za-z0-9_.\[\]-]{1,64}$`)
	leaseRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

func validURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("%s: expected an absolute http(s) URL without credentials, got %q", field, s)
	}
	return nil
}

// Validate checks the parameters; it runs at load time.
func (o *Open) Validate() error {
	if o.Mode != "fwknop" && o.Driver != "fwknop" {
		if err := validURL("url", o.URL); err != nil {
			return err
		}
	}
	if o.Port < 0 || o.Port > 65535 {
		return fmt.Errorf("port: must be 1 to 65535, got %d", o.Port)
	}
	if o.IP != "" {
		if _, err := netip.ParseAddr(o.IP); err != nil {
			return fmt.Errorf("ip: %q is not an IP address", o.IP)
		}
	}
	switch o.Expect {
	case "opened", "refused", "any":
	default:
		return fmt.Errorf("expect: must be opened, refused or any, got %q", o.Expect)
	}
	if err := o.Conn.validate(); err != nil {
		return err
	}
	switch {
	case o.Driver != "" && o.Mode != "" && o.Driver != o.Mode:
		return fmt.Errorf("driver, mode: %q and %q disagree; give one", o.Driver, o.Mode)
	case o.Driver != "":
		o.Mode = o.Driver
	case o.Mode == "":
		o.Mode = "portgate"
	}
	if o.Attempts < 1 {
		return fmt.Errorf("attempts: must be at least 1, got %d", o.Attempts)
	}
	if o.Attempts > 1 && (!o.WrongCreds || o.Expect == "opened") {
		return errors.New("attempts: only with wrong_credentials and expect: refused or any (a guessing attacker)")
	}
	if o.Mode != "fwknop" {
		for name, set := range map[string]bool{"key_file": o.KeyFile != "", "stanza": o.Stanza != ""} {
			if set {
				return fmt.Errorf("%s: only with driver: fwknop", name)
			}
		}
	}
	if o.Proto != "" && o.Proto != "tcp" && o.Proto != "udp" {
		return fmt.Errorf("proto: must be tcp or udp, got %q", o.Proto)
	}
	switch o.Mode {
	case "portgate":
		if !userRE.MatchString(o.User) {
			return fmt.Errorf("user: required with mode: portgate: 1 to 64 letters, digits, '.', '_', '@' or '-', got %q", o.User)
		}
		if o.Port == 0 {
			return errors.New("port: required with mode: portgate")
		}
		if o.WrongCreds && o.Code != "" {
			return errors.New("wrong_credentials, code: give one")
		}
		if err := o.TOTP.validate(!o.WrongCreds); err != nil {
			return err
		}
		if o.Duration < 0 || o.Duration%time.Second != 0 || (o.Duration > 0 && o.Duration < time.Second) {
			return fmt.Errorf("duration: must be a whole number of seconds, got %s", o.Duration)
		}
		for name, set := range map[string]bool{"fields": len(o.Fields) > 0, "success_match": o.SuccessMatch != ""} {
			if set {
				return fmt.Errorf("%s: only with mode: form", name)
			}
		}
	case "fwknop":
		return o.validateFwknop()
	case "form":
		if o.Password == "" {
			return errors.New("password: required with mode: form")
		}
		for name, v := range map[string]string{"password_field": o.PasswordField, "ip_field": o.IPField} {
			if !fieldRE.MatchString(v) {
				return fmt.Errorf("%s: %q is not a form field name", name, v)
			}
		}
		for k := range o.Fields {
			if !fieldRE.MatchString(k) || k == o.PasswordField || k == o.IPField {
				return fmt.Errorf("fields: %q is not a usable field name", k)
			}
		}
		if _, err := regexp.Compile(o.SuccessMatch); err != nil {
			return fmt.Errorf("success_match: %v", err)
		}
		for name, set := range map[string]bool{"user": o.User != "", "secret": o.TOTP.hasKey() || o.Code != "", "duration": o.Duration != 0, "wrong_credentials": o.WrongCreds} {
			if set {
				return fmt.Errorf("%s: only with mode: portgate", name)
			}
		}
	default:
		return fmt.Errorf("mode: must be portgate, form or fwknop, got %q", o.Mode)
	}
	return nil
}

// Run asks the opener.
func (o *Open) Run(ctx context.Context, env *steps.Env) error {
	for _, s := range []string{o.Secret, o.SecretHex, o.Password, o.Code} {
		env.Secret(s)
	}
	env.SetOutput("port", o.Port)
	env.SetOutput("driver", o.Mode)
	env.SetOutput("throttled", false)
	env.SetOutput("attempts", 1)
	switch o.Mode {
	case "form":
		return o.runForm(ctx, env)
	case "fwknop":
		return o.runFwknop(ctx, env)
	}
	return o.runPortgate(ctx, env)
}

// leaseAnswer is the part of portgate's answer the step reads.
type leaseAnswer struct {
	ID            string `json:"id"`
	IP            string `json:"ip"`
	Port          int    `json:"port"`
	ExpiresUnixMs int64  `json:"expires_unix_ms"`
	Token         string `json:"token"`
	Error         string `json:"error"`
	Message       string `json:"message"`
}

func (o *Open) runPortgate(ctx context.Context, env *steps.Env) error {
	now := o.now
	if now == nil {
		now = time.Now
	}
	base := strings.TrimRight(o.URL, "/")
	who := base + "\x00" + o.User
	code, counter := o.Code, uint64(0)
	totpParams := o.TOTP
	switch {
	case o.WrongCreds && !totpParams.hasKey():
		// No key at hand: any code of the right length that no one computed.
		code = strings.Repeat("0", totpParams.digits())
	case o.WrongCreds && totpParams.OffsetSteps == 0:
		totpParams.OffsetSteps = 40
	}
	if code == "" {
		var err error
		if code, counter, err = totpParams.freshCode(ctx, who, now); err != nil {
			return err
		}
	}
	env.Secret(code)
	env.SetOutput("code", code)

	req := map[string]any{"user": o.User, "code": code, "port": o.Port}
	if o.Password != "" {
		req["password"] = o.Password
	}
	if o.Proto != "" {
		req["proto"] = o.Proto
	}
	if o.IP != "" {
		req["ip"] = o.IP
	}
	if o.Duration > 0 {
		req["duration"] = strconv.Itoa(int(o.Duration/time.Second)) + "s"
	}
	body, _ := json.Marshal(req)
	c := o.Conn.call("POST", base+"/v1/leases")
	c.ContentType, c.Body = "application/json", body
	var ans answer
	throttled := false
	for i := range o.Attempts {
		var err error
		if ans, err = c.do(ctx, env); err != nil {
			return fmt.Errorf("calling portgate at %s from %s (attempt %d): %w", o.URL, o.Conn.from(), i+1, err)
		}
		if ans.Status == 429 {
			throttled = true
		}
		if ans.Status == 201 {
			break
		}
	}
	env.SetOutput("attempts", o.Attempts)
	env.SetOutput("throttled", throttled)
	answered := now()
	env.SetOutput("status", ans.Status)
	var la leaseAnswer
	_ = json.Unmarshal(ans.Body, &la)
	opened := ans.Status == 201
	if opened && (la.ID == "" || la.Token == "" || la.ExpiresUnixMs == 0) {
		return fmt.Errorf("portgate at %s answered 201 without a lease (id, token, expiry): not a portgate API?", o.URL)
	}
	env.Secret(la.Token)
	env.SetOutput("opened", opened)
	env.SetOutput("lease_id", la.ID)
	env.SetOutput("ip", la.IP)
	env.SetOutput("token", la.Token)
	reason := ""
	expires := time.Time{}
	if opened {
		if counter > 0 {
			markSent(who, counter)
		}
		expires = time.UnixMilli(la.ExpiresUnixMs).UTC()
		env.SetOutput("expires", expires.Format("2006-01-02T15:04:05.000Z07:00"))
		env.SetOutput("expires_unix", int((la.ExpiresUnixMs+999)/1000))
		env.SetOutput("expires_in_ms", int(expires.Sub(answered).Milliseconds()))
		env.Logf("portgate opened tcp/%d for %s until %s (lease %s)", o.Port, la.IP, expires.Format(time.RFC3339), la.ID)
		if o.Close {
			o.registerClose(env, base, la.ID, la.Token)
		}
	} else {
		reason = answerReason(ans, la)
		env.SetOutput("expires", "")
		env.SetOutput("expires_unix", 0)
		env.SetOutput("expires_in_ms", 0)
		env.Logf("portgate refused tcp/%d: %s", o.Port, reason)
	}
	env.SetOutput("reason", reason)
	env.SetOutput("refusal", refusalOf(opened, ans.Status))
	o.evidence(env, ans.Status, opened, reason, la.ID, la.IP, expires)
	return o.verdict(opened, reason)
}

// refusalOf names how an HTTP opener refused, in the words every driver
// shares.
func refusalOf(opened bool, status int) string {
	switch {
	case opened:
		return ""
	case status == 401:
		return "auth"
	case status == 403:
		return "not_allowed"
	case status == 429:
		return "throttled"
	case status == 400:
		return "bad_request"
	}
	return "error"
}

func answerReason(ans answer, la leaseAnswer) string {
	if la.Error != "" {
		return fmt.Sprintf("%d %s: %s", ans.Status, la.Error, la.Message)
	}
	return fmt.Sprintf("%d: %s", ans.Status, firstLine(ans.Body))
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func (o *Open) registerClose(env *steps.Env, base, id, token string) {
	conn := o.Conn
	env.Undo("port.close "+id, func(ctx context.Context) error {
		_, _, _, err := closeLease(ctx, env, conn, base, id, "Bearer "+token)
		return err
	})
}

func (o *Open) runForm(ctx context.Context, env *steps.Env) error {
	form := url.Values{o.PasswordField: {o.Password}}
	if o.IP != "" {
		form.Set(o.IPField, o.IP)
	}
	keys := make([]string, 0, len(o.Fields))
	for k := range o.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		form.Set(k, o.Fields[k])
	}
	c := o.Conn.call("POST", o.URL)
	c.ContentType, c.Body = "application/x-www-form-urlencoded", []byte(form.Encode())
	ans, err := c.do(ctx, env)
	if err != nil {
		return fmt.Errorf("calling %s from %s: %w", o.URL, o.Conn.from(), err)
	}
	env.SetOutput("status", ans.Status)
	opened := ans.Status >= 200 && ans.Status < 300
	reason := ""
	if !opened {
		reason = fmt.Sprintf("%d: %s", ans.Status, firstLine(ans.Body))
	} else if o.SuccessMatch != "" && !regexp.MustCompile(o.SuccessMatch).Match(ans.Body) {
		opened = false
		reason = fmt.Sprintf("%d, but the answer does not match success_match %q", ans.Status, o.SuccessMatch)
	}
	env.SetOutput("opened", opened)
	env.SetOutput("reason", reason)
	env.SetOutput("refusal", refusalOf(opened, ans.Status))
	for _, name := range []string{"lease_id", "expires", "token", "code"} {
		env.SetOutput(name, "")
	}
	env.SetOutput("ip", o.IP)
	env.SetOutput("expires_unix", 0)
	env.SetOutput("expires_in_ms", 0)
	if opened {
		env.Logf("the form at %s opened the port; it offers no lease or close: the rule stays until the opener removes it", o.URL)
	}
	o.evidence(env, ans.Status, opened, reason, "", o.IP, time.Time{})
	return o.verdict(opened, reason)
}

func (o *Open) verdict(opened bool, reason string) error {
	switch {
	case o.Expect == "opened" && !opened:
		return steps.Failf("the opener refused to open tcp/%d: %s", o.Port, reason)
	case o.Expect == "refused" && opened:
		return steps.Failf("the opener opened tcp/%d, expected a refusal", o.Port)
	}
	return nil
}

func (o *Open) evidence(env *steps.Env, status int, opened bool, reason, id, ip string, expires time.Time) {
	result := "opened"
	if !opened {
		result = "refused: " + reason
	}
	rows := [][]string{
		{"Opener", o.URL},
		{"Mode", o.Mode},
		{"Requested from", o.Conn.from()},
	}
	if o.Mode == "portgate" {
		rows = append(rows, []string{"User", o.User})
		how := "computed from the key now"
		switch {
		case o.WrongCreds:
			how = fmt.Sprintf("wrong on purpose, %d attempt(s)", o.Attempts)
		case o.Code != "":
			how = "given verbatim"
		case o.OffsetSteps != 0:
			how = fmt.Sprintf("computed %+d time steps from now", o.OffsetSteps)
		}
		rows = append(rows, []string{"Code", how})
	}
	rows = append(rows,
		[]string{"Port", strconv.Itoa(o.Port)},
		[]string{"Address", ip},
		[]string{"HTTP status", strconv.Itoa(status)},
		[]string{"Result", result},
	)
	if id != "" {
		rows = append(rows, []string{"Lease", id}, []string{"Ends", expires.Format(time.RFC3339)})
	}
	env.AddEvidence(steps.TableEvidence("Port opening request", []string{"Field", "Value"}, rows))
}
