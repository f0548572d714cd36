package lab

import (
	"context"
	"fmt"
)

// The bastion environment: a jump host and a host on a network only the
// bastion reaches, like an EC2 instance in a private subnet. The inner host
// lives on the lab's private network, which the bastion alone joins
// besides the lab network; no other lab host has a route there. The
// machine running opsdrill sits on every Docker bridge, so the inner host's
// firewall also accepts nothing but the bastion (and its own replies); it
// serves a small HTTP page on BastionHTTPPort, and its private name
// BastionInnerName resolves on the bastion only (its /etc/hosts), like a
// private hosted zone. The lab's ssh_config gives the inner host
// `ProxyJump bastion`, so ssh://inner and `via: ssh://bastion` are tested
// against real OpenSSH.
const (
	// BastionEnv is the environment's name.
	BastionEnv = "bastion"
	// BastionHost is the jump host.
	BastionHost = "bastion"
	// BastionInner is the host only the bastion reaches.
	BastionInner = "inner"
	// BastionInnerName is the inner host's private DNS name, known on the
	// bastion only.
	BastionInnerName = "inner.private.internal"
	// BastionHTTPPort is where the inner host serves its page.
	BastionHTTPPort = 8080
)

func init() {
	behindBastion[BastionInner] = BastionHost
	RegisterEnv(Env{
		Name: BastionEnv,
		Doc:  "a bastion and a host only the bastion reaches (ProxyJump, via:)",
		Hosts: []HostSpec{
			{Name: BastionHost, JoinsPrivate: true},
			{Name: BastionInner, Private: true, NetAdmin: true, Start: []Command{
				{Args: []string{"sh", "-ec", `mkdir -p /srv/www; echo "inner ok" >/srv/www/index.html`}},
				{Args: []string{"busybox", "httpd", "-f", "-p", fmt.Sprint(BastionHTTPPort), "-h", "/srv/www"}, Detach: true},
			}},
		},
		Setup: setupBastion,
		Vars: func(l *Lab) (map[string]any, map[string]string) {
			inner, _ := l.Host(BastionInner)
			return map[string]any{"bastion": map[string]any{
				"host":       "lab:" + l.ID + "/" + BastionHost,
				"inner":      "lab:" + l.ID + "/" + BastionInner,
				"inner_ip":   inner.IP.String(),
				"inner_name": BastionInnerName,
				"http_port":  BastionHTTPPort,
			}}, nil
		},
	})
}

// setupBastion fences the inner host off (everything but the bastion's
// address on the private network is dropped) and gives the bastion the
// private name.
func setupBastion(ctx context.Context, l *Lab) error {
	b, err := l.Host(BastionHost)
	if err != nil {
		return err
	}
	inner, err := l.Host(BastionInner)
	if err != nil {
		return err
	}
	for _, c := range []struct {
		h    *Host
		args []string
	}{
		{inner, []string{"sh", "-ec", `iptables -A INPUT -i lo -j ACCEPT
iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A INPUT -s "$1" -j ACCEPT
iptables -P INPUT DROP`, "sh", b.PrivateIP.String()}},
		{b, []string{"sh", "-ec", `echo "$1 $2" >>/etc/hosts`, "sh", inner.IP.String(), BastionInnerName}},
	} {
		res, err := c.h.Exec(ctx, c.args...)
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			return fmt.Errorf("host %s: %w", c.h.Name, err)
		}
	}
	return nil
}
