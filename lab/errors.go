package lab

import "errors"

// Errors callers can test with errors.Is. The wrapped messages say what to do.
var (
	// ErrNoDocker: no Docker engine answers.
	ErrNoDocker = errors.New("no Docker engine")
	// ErrImageMissing: the lab image is not in the engine (it is never pulled).
	ErrImageMissing = errors.New("lab image missing")
	// ErrNotReady: a host's readiness probe or start command did not succeed.
	ErrNotReady = errors.New("lab host not ready")
	// ErrPortInUse: a port a host publishes on 127.0.0.1 is taken.
	ErrPortInUse = errors.New("port already in use")
	// ErrAlreadyRunning: a lab is already up (or being brought up) in the
	// state folder.
	ErrAlreadyRunning = errors.New("a lab is already running")
	// ErrNoLab: no lab state was found.
	ErrNoLab = errors.New("no lab is up")
	// ErrUnknownEnv: no environment of that name is registered.
	ErrUnknownEnv = errors.New("unknown lab environment")
	// ErrConflict: the chosen environments cannot run together.
	ErrConflict = errors.New("conflicting lab environments")
	// ErrNoHost: the lab has no host of that name.
	ErrNoHost = errors.New("no such lab host")
)
