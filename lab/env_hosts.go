package lab

// The hosts environment: three plain hosts on the lab network, the base for
// network drills (reachability, port probes, firewall rules). Scenarios find
// them under vars hosts.client1.ip, hosts.client2.ip and hosts.server.ip.
func init() {
	RegisterEnv(Env{
		Name: "hosts",
		Doc:  "two clients and a server on one network",
		Hosts: []HostSpec{
			{Name: "client1", NetAdmin: true},
			{Name: "client2", NetAdmin: true},
			{Name: "server", NetAdmin: true},
		},
	})
}
