//go:build !linux

package reaper

import "errors"

// runCgroup is Linux-only; elsewhere the environment token alone protects
// a run.
type runCgroup struct{ dir string }

func newRunCgroup(string) (*runCgroup, error) {
	return nil, errors.New("cgroups are Linux-only")
}

func (c *runCgroup) enter() error { return errors.ErrUnsupported }
func (c *runCgroup) leave() error { return errors.ErrUnsupported }
func (c *runCgroup) remove()      {}

func killCgroup(string) error { return nil }
