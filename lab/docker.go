package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/opsdrill/opsdrill/lab/image"
)

// Labels carried by every container and network of a lab. LabelLab holds the
// lab id and marks everything the lab package created. LabelOwner names the
// process that created the lab (hostname:pid) and LabelState the state
// folder of a lab that outlives its process; DownAll uses them to tell
// leftovers of a crashed run from labs still in use.
const (
	LabelLab   = "org.opsdrill.lab"
	LabelEnv   = "org.opsdrill.lab.env"
	LabelHost  = "org.opsdrill.lab.host"
	LabelOwner = "org.opsdrill.lab.owner"
	LabelState = "org.opsdrill.lab.state"
)

// ryukEnv is testcontainers' switch for its reaper container. The reaper is
// an image pulled from Docker Hub, which this lab must never need: the lab
// cleans up explicitly, by label.
const ryukEnv = "TESTCONTAINERS_RYUK_DISABLED"

// testcontainers reads its configuration once per process, at its first
// use; setting the variable from init makes sure that comes after, whoever
// in the program uses testcontainers first.
func init() {
	if _, set := os.LookupEnv(ryukEnv); !set {
		os.Setenv(ryukEnv, "true")
	}
}

var setupOnce sync.Once

// setupTestcontainers silences testcontainers' global logger, which prints
// a banner on first connection; the lab reports progress itself.
func setupTestcontainers() {
	setupOnce.Do(func() { tclog.SetDefault(tclog.NewNoopLogger()) })
}

// engine is the Docker engine the lab runs on.
type engine struct {
	cli *testcontainers.DockerClient
}

// connect returns a client for the engine testcontainers would use
// (DOCKER_HOST, docker context, default socket), after checking it answers.
func connect(ctx context.Context) (*engine, error) {
	setupTestcontainers()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hint := "start the Docker engine (systemctl start docker) or point DOCKER_HOST at one"
	// testcontainers quietly falls back to the default socket when
	// DOCKER_HOST does not answer; a user who set it means that engine.
	if host := os.Getenv("DOCKER_HOST"); host != "" {
		if err := pingHost(ctx); err != nil {
			return nil, fmt.Errorf("%w: DOCKER_HOST=%s does not answer: %v; start that engine or unset DOCKER_HOST", ErrNoDocker, host, err)
		}
	}
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v; %s", ErrNoDocker, err, hint)
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return nil, fmt.Errorf("%w at %s: %v; %s", ErrNoDocker, cli.DaemonHost(), err, hint)
	}
	return &engine{cli: cli}, nil
}

func pingHost(ctx context.Context) error {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Ping(ctx, client.PingOptions{})
	return err
}

// Ping checks that a Docker engine answers. The error wraps ErrNoDocker.
func Ping(ctx context.Context) error {
	_, err := connect(ctx)
	return err
}

// imageRef is the image the lab runs: an explicit one, $OPSDRILL_LAB_IMAGE,
// or the one built from this binary's lab/image sources.
func imageRef(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if ref := os.Getenv(image.EnvImage); ref != "" {
		return ref
	}
	return image.Ref()
}

// checkImage makes sure ref is present locally: the lab never pulls.
func (e *engine) checkImage(ctx context.Context, ref string) error {
	_, err := e.cli.ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect lab image %s: %w", ref, err)
	}
	return missingImage(ref, e.otherLabImages(ctx))
}

// missingImage says what to do about a missing image: build the default
// one, or fix an override. others are the lab images the engine has.
func missingImage(ref string, others []string) error {
	if ref != image.Ref() {
		return fmt.Errorf("%w: %s (from --image or $%s) is not in the Docker engine; build or load it, or drop the override to use %s",
			ErrImageMissing, ref, image.EnvImage, image.Ref())
	}
	var found string
	if len(others) > 0 {
		found = fmt.Sprintf(" (found %s, built from other sources)", strings.Join(others, ", "))
	}
	return fmt.Errorf("%w: %s is not in the Docker engine%s; %s", ErrImageMissing, ref, found, image.BuildHint)
}

// CheckImage reports whether the lab image is present. The error wraps
// ErrNoDocker or ErrImageMissing and says what to do.
func CheckImage(ctx context.Context, ref string) error {
	e, err := connect(ctx)
	if err != nil {
		return err
	}
	return e.checkImage(ctx, imageRef(ref))
}

func (e *engine) otherLabImages(ctx context.Context) []string {
	res, err := e.cli.ImageList(ctx, client.ImageListOptions{
		Filters: make(client.Filters).Add("reference", image.Repository),
	})
	if err != nil {
		return nil
	}
	var tags []string
	for _, img := range res.Items {
		for _, t := range img.RepoTags {
			if !strings.HasSuffix(t, ":latest") {
				tags = append(tags, t)
			}
		}
	}
	sort.Strings(tags)
	return tags
}

// Resource is a container or network that carries the lab label.
type Resource struct {
	Kind     string `json:"kind"` // container or network
	ID       string `json:"id"`
	Name     string `json:"name"`
	Lab      string `json:"lab"`
	Env      string `json:"env,omitempty"`
	Host     string `json:"host,omitempty"`
	State    string `json:"state,omitempty"` // containers: running, exited, ...
	Owner    string `json:"owner,omitempty"` // hostname:pid of the creating process
	StateDir string `json:"state_dir,omitempty"`
}

func resourceFromLabels(kind, id, name string, labels map[string]string) Resource {
	return Resource{
		Kind: kind, ID: id, Name: name,
		Lab: labels[LabelLab], Env: labels[LabelEnv], Host: labels[LabelHost],
		Owner: labels[LabelOwner], StateDir: labels[LabelState],
	}
}

// labelFilter selects every lab resource, or one lab's when id is set.
func labelFilter(id string) client.Filters {
	if id == "" {
		return make(client.Filters).Add("label", LabelLab)
	}
	return make(client.Filters).Add("label", LabelLab+"="+id)
}

// resources lists the labelled containers and networks (of lab id, or all).
func (e *engine) resources(ctx context.Context, id string) ([]Resource, error) {
	cs, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: labelFilter(id)})
	if err != nil {
		return nil, fmt.Errorf("list lab containers: %w", err)
	}
	ns, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: labelFilter(id)})
	if err != nil {
		return nil, fmt.Errorf("list lab networks: %w", err)
	}
	var out []Resource
	for _, c := range cs.Items {
		name := c.ID[:12]
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		r := resourceFromLabels("container", c.ID, name, c.Labels)
		r.State = string(c.State)
		out = append(out, r)
	}
	for _, n := range ns.Items {
		out = append(out, resourceFromLabels("network", n.ID, n.Name, n.Labels))
	}
	return out, nil
}

// ListResources returns every container and network carrying the lab label,
// whichever lab (or crashed run) created it.
func ListResources(ctx context.Context) ([]Resource, error) {
	e, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	return e.resources(ctx, "")
}

// removeLabelled force-removes the containers, then the networks, of lab id
// (every lab when id is empty). Removal runs in parallel; a resource already
// gone is not an error. It returns what it removed.
func (e *engine) removeLabelled(ctx context.Context, id string) ([]Resource, error) {
	res, err := e.resources(ctx, id)
	if err != nil {
		return nil, err
	}
	var containers, networks []Resource
	for _, r := range res {
		if r.Kind == "container" {
			containers = append(containers, r)
		} else {
			networks = append(networks, r)
		}
	}
	remove := func(rs []Resource, fn func(Resource) error) error {
		errs := make([]error, len(rs))
		var wg sync.WaitGroup
		for i, r := range rs {
			wg.Go(func() {
				if err := fn(r); err != nil && !cerrdefs.IsNotFound(err) {
					errs[i] = fmt.Errorf("remove %s %s: %w", r.Kind, r.Name, err)
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	err = remove(containers, func(r Resource) error {
		_, err := e.cli.ContainerRemove(ctx, r.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		return err
	})
	if err != nil {
		return res, err
	}
	return res, remove(networks, func(r Resource) error {
		_, err := e.cli.NetworkRemove(ctx, r.ID, client.NetworkRemoveOptions{})
		return err
	})
}
