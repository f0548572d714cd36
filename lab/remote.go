package lab

import (
	"context"
	"fmt"
	"strings"

	"github.com/moby/moby/client"
)

// FindHost returns a running lab host by reference, from any process: the
// steps of a scenario use it to act from inside the lab ("probe the gate
// from client2"). ref is a host name ("client2"), or "LABID/NAME" when
// several labs run at once. It looks the container up by its labels, so it
// needs no state file.
func FindHost(ctx context.Context, ref string) (*Host, error) {
	labID, name, scoped := strings.Cut(ref, "/")
	if !scoped {
		name, labID = ref, ""
	}
	if name == "" {
		return nil, fmt.Errorf("%w: empty host name", ErrNoHost)
	}
	e, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	f := make(client.Filters).Add("label", LabelHost+"="+name).Add("status", "running")
	if labID != "" {
		f = f.Add("label", LabelLab+"="+labID)
	} else {
		f = f.Add("label", LabelLab)
	}
	list, err := e.cli.ContainerList(ctx, client.ContainerListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("find lab host %s: %w", ref, err)
	}
	cs := list.Items
	switch len(cs) {
	case 0:
		return nil, fmt.Errorf("%w: no running lab host %q; is the lab up (opsdrill lab status)?", ErrNoHost, ref)
	case 1:
	default:
		var labs []string
		for _, c := range cs {
			labs = append(labs, c.Labels[LabelLab]+"/"+name)
		}
		return nil, fmt.Errorf("lab host %q is ambiguous: several labs run (%s); name one as LABID/NAME", ref, strings.Join(labs, ", "))
	}
	c := cs[0]
	cname := ""
	if len(c.Names) > 0 {
		cname = strings.TrimPrefix(c.Names[0], "/")
	}
	return &Host{
		Name: name, Env: c.Labels[LabelEnv], Container: cname, ContainerID: c.ID,
		lab: &Lab{ID: c.Labels[LabelLab], eng: e},
	}, nil
}
