package port

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

// Close is port.close.
type Close struct {
	URL     string `yaml:"url" required:"true" doc:"portgate's base URL (https://gate:8443)"`
	LeaseID string `yaml:"lease_id" required:"true" doc:"the lease to close (port.open's lease_id output)"`
	Token   string `yaml:"token" doc:"the lease's bearer token (port.open's token output) or an admin token"`
	User    string `yaml:"user" doc:"instead of a token: the lease's owner, with secret, secret_hex or code"`
	// Password is the owner's second factor, when portgate asks for one.
	Password string `yaml:"password" doc:"with user: the owner's password, when portgate requires a second factor"`
	TOTP     `yaml:",inline"`
	Conn     `yaml:",inline"`
	Expect   string `yaml:"expect" doc:"closed: fail unless the lease is closed or already gone; any: only report"`

	now func() time.Time
}

// Validate checks the parameters; it runs at load time.
func (c *Close) Validate() error {
	if err := validURL("url", c.URL); err != nil {
		return err
	}
	if !leaseRE.MatchString(c.LeaseID) {
		return fmt.Errorf("lease_id: %q is not a lease id", c.LeaseID)
	}
	switch {
	case c.Token != "" && c.User != "":
		return errors.New("token, user: give a token or user credentials, not both")
	case c.Token == "" && c.User == "":
		return errors.New("token: required (or user with secret or code)")
	case c.User != "":
		if !userRE.MatchString(c.User) {
			return fmt.Errorf("user: %q is not a user name", c.User)
		}
		if err := c.TOTP.validate(true); err != nil {
			return err
		}
	case c.TOTP.hasKey() || c.Code != "" || c.Password != "":
		return errors.New("secret, code, password: only with user")
	}
	switch c.Expect {
	case "closed", "any":
	default:
		return fmt.Errorf("expect: must be closed or any, got %q", c.Expect)
	}
	return c.Conn.validate()
}

// Run closes the lease.
func (c *Close) Run(ctx context.Context, env *steps.Env) error {
	for _, s := range []string{c.Token, c.Secret, c.SecretHex, c.Code, c.Password} {
		env.Secret(s)
	}
	base := strings.TrimRight(c.URL, "/")
	auth := "Bearer " + c.Token
	if c.User != "" {
		now := c.now
		if now == nil {
			now = time.Now
		}
		code := c.Code
		who := base + "\x00" + c.User
		var counter uint64
		if code == "" {
			var err error
			if code, counter, err = c.TOTP.freshCode(ctx, who, now); err != nil {
				return err
			}
		}
		env.Secret(code)
		cred := c.User + ":" + code
		if c.Password != "" {
			cred += ":" + c.Password
		}
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(cred))
		env.Secret(auth)
		defer func() {
			if counter > 0 {
				markSent(who, counter)
			}
		}()
	}
	closed, gone, status, err := closeLease(ctx, env, c.Conn, base, c.LeaseID, auth)
	env.SetOutput("status", status)
	env.SetOutput("closed", closed)
	env.SetOutput("already_gone", gone)
	result := "closed"
	switch {
	case gone:
		result = "already gone (ended, closed, or not covered by these credentials)"
	case !closed:
		result = "not closed"
	}
	env.AddEvidence(steps.TableEvidence("Port closing request", []string{"Field", "Value"}, [][]string{
		{"Opener", c.URL}, {"Lease", c.LeaseID}, {"Requested from", c.Conn.from()},
		{"HTTP status", strconv.Itoa(status)}, {"Result", result},
	}))
	if err != nil {
		if status == 0 || c.Expect == "any" {
			return err
		}
		return steps.Failf("%v", err)
	}
	return nil
}

// closeLease sends DELETE for the lease. portgate answers 404 both for a
// lease that ended and for credentials that do not cover it; both leave
// nothing open for these credentials, so both count as closed. An error
// with status 0 means no answer came.
func closeLease(ctx context.Context, env *steps.Env, conn Conn, base, id, auth string) (closed, gone bool, status int, err error) {
	c := conn.call("DELETE", base+"/v1/leases/"+id)
	c.Auth = auth
	ans, err := c.do(ctx, env)
	if err != nil {
		return false, false, 0, fmt.Errorf("closing lease %s at %s from %s: %w", id, base, conn.from(), err)
	}
	switch ans.Status {
	case 200:
		env.Logf("closed lease %s", id)
		return true, false, ans.Status, nil
	case 404:
		env.Logf("lease %s was already gone", id)
		return true, true, ans.Status, nil
	}
	var la leaseAnswer
	_ = json.Unmarshal(ans.Body, &la)
	return false, false, ans.Status, fmt.Errorf("portgate did not close lease %s: %s", id, answerReason(ans, la))
}
