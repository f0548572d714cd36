package vpn

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestReachValidate(t *testing.T) {
	ok := func() *Reach {
		r := newReach().(*Reach)
		r.Target, r.VGWInsideIP, r.VPCCIDR = "172.28.16.136", "169.254.21.45", "172.28.0.0/16"
		return r
	}
	assert.NoError(t, ok().Validate())
	cases := []struct {
		name string
		edit func(r *Reach)
		want string
	}{
		{"target", func(r *Reach) { r.Target = "ec2" }, `target: want an IPv4 address, got "ec2"`},
		{"target outside the VPC", func(r *Reach) { r.Target = "10.0.0.1" }, "target: 10.0.0.1 is not in vpc_cidr 172.28.0.0/16"},
		{"vgw inside", func(r *Reach) { r.VGWInsideIP = "" }, `vgw_inside_ip: want an IPv4 address, got ""`},
		{"vpc", func(r *Reach) { r.VPCCIDR = "172.28.0.0" }, `vpc_cidr: want an IPv4 CIDR such as 172.28.0.0/16, got "172.28.0.0"`},
		{"port", func(r *Reach) { r.TCPPort = 0 }, "tcp_port: must be 1 to 65535, got 0"},
		{"count", func(r *Reach) { r.Count = 0 }, "count: must be 1 to 100, got 0"},
		{"timeout", func(r *Reach) { r.Timeout = time.Millisecond }, "timeout: must be 100ms to 1m, got 1ms"},
		{"host", func(r *Reach) { r.Host = "ftp://x" }, "host"},
	}
	for _, tc := range cases {
		r := ok()
		tc.edit(r)
		err := r.Validate()
		if assert.Error(t, err, tc.name) {
			assert.Contains(t, err.Error(), tc.want, tc.name)
		}
	}
}
