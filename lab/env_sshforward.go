package lab

import (
	"context"
	"fmt"
	"time"
)

// The ssh-forward environment is the runbook "Port Forwarding in AWS
// LightSail or EC2 machines via SSH": a home host with a small HTTP
// service (the runbook's Philips Hue bridge, here busybox httpd), the
// Lightsail server with sshd configured as the runbook says
// (GatewayPorts yes, ClientAliveInterval 180, ClientAliveCountMax 3,
// UseDNS no — but no root login: the lab's sshd drop-in keeps
// PermitRootLogin no and keys only), and a remote machine that reaches
// the home service on the server's port 9090 while the -R forward is up.
const (
	// ForwardEnv is the environment's name.
	ForwardEnv = "ssh-forward"
	// ForwardHome, ForwardServer and ForwardRemote are its hosts.
	ForwardHome   = "fwd-home"
	ForwardServer = "fwd-server"
	ForwardRemote = "fwd-remote"
	// ForwardHomePort is the home service's port; ForwardPort the
	// server's forwarded port.
	ForwardHomePort = 8080
	ForwardPort     = 9090
	// ForwardServerConf is the server's sshd drop-in with the runbook's
	// settings. sshd keeps the first value it reads, and Debian's
	// sshd_config includes sshd_config.d/*.conf in name order, so this
	// file wins over the lab's own opsdrill.conf.
	ForwardServerConf = "/etc/ssh/sshd_config.d/00-runbook.conf"

	forwardDocRoot = "/srv/home"
)

// ForwardServerConfText is the runbook's sshd_config change, root login
// excepted.
const ForwardServerConfText = `# The runbook's changes to /etc/ssh/sshd_config (PermitRootLogin yes left out).
UseDNS no
ClientAliveInterval 180
ClientAliveCountMax 3
GatewayPorts yes
`

func init() {
	RegisterEnv(Env{
		Name: ForwardEnv,
		Doc:  "SSH port forwarding: a home HTTP service, a server with the runbook's sshd settings, a remote client",
		Hosts: []HostSpec{
			{
				Name:  ForwardHome,
				Start: []Command{{Args: []string{"sh", "-c", "mkdir -p " + forwardDocRoot + " && busybox httpd -p " + fmt.Sprint(ForwardHomePort) + " -h " + forwardDocRoot}}},
				Ready: &Probe{Cmd: []string{"sh", "-c", "nc -z 127.0.0.1 " + fmt.Sprint(ForwardHomePort)}, Timeout: 30 * time.Second},
			},
			{
				Name:  ForwardServer,
				Files: []File{{Path: ForwardServerConf, Content: []byte(ForwardServerConfText)}},
			},
			{Name: ForwardRemote},
		},
		Setup: setupForward,
		Vars:  forwardVars,
	})
}

// forwardPage is what the home service answers: a per-lab token, so the
// remote's check proves it reached this service and nothing else.
func forwardPage(l *Lab) string {
	return "opsdrill home service " + l.Password("ssh-forward/token")[:16] + "\n"
}

func setupForward(ctx context.Context, l *Lab) error {
	h, err := l.Host(ForwardHome)
	if err != nil {
		return err
	}
	return writeFile(ctx, h, forwardDocRoot+"/index.html", forwardPage(l), false)
}

// forwardVars are the names scenarios/ssh-port-forward.yaml reads.
func forwardVars(l *Lab) (map[string]any, map[string]string) {
	v := map[string]any{
		"fwd_server":      "lab:" + l.ID + "/" + ForwardServer,
		"fwd_server_ssh":  "ssh://" + ForwardServer,
		"fwd_remote":      "lab:" + l.ID + "/" + ForwardRemote,
		"fwd_port":        ForwardPort,
		"fwd_expect_body": forwardPage(l)[:len(forwardPage(l))-1],
	}
	if s, err := l.Host(ForwardServer); err == nil {
		v["fwd_server_address"] = s.IP.String()
	}
	if h, err := l.Host(ForwardHome); err == nil {
		v["fwd_home_service"] = h.Addr(ForwardHomePort)
	}
	return v, nil
}
