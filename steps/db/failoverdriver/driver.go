// Package failoverdriver is the interface between the db.failover step and
// the platforms it fails over that live outside steps/: a program links a
// platform's package, whose init calls Register, as database/sql drivers
// register themselves. The lab's mariadb-pair registers the "lab" driver
// this way (package lab), so steps/db knows no lab code; aws-rds and
// command are built into the step. (The lab's RDS API needs no hook: it
// is a service of the lab that the aws-rds driver reaches by its URL.)
package failoverdriver

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

// MomentFault is the moment (steps.Env.Note) a driver records when its
// fault struck (the kill, the cut), as distinct from the trigger.
const MomentFault = "failover.fault"

// Writer is who writes, as far as the platform can tell.
type Writer struct {
	Host        string // platform host, or cluster member
	AZ          string
	SecondaryAZ string
	Status      string // the platform's status for the instance or cluster
	Hostname    string // @@hostname
	ServerID    int64  // @@server_id
	ReadOnly    bool
	Address     string // ip:port the server answered on
}

// Params are the step's parameters a registered driver reads.
type Params struct {
	// Lab is the lab id (empty: the only lab running the environment).
	Lab string
	// Action is the fault: kill, partition or switchover.
	Action string
	// PartitionFor heals a partition this long after it began (0: at the
	// scenario's end).
	PartitionFor time.Duration
	// ReplaceStandby rebuilds a killed writer as the standby at once.
	ReplaceStandby bool
	// Fence makes a cut-off writer read-only.
	Fence bool
}

// Driver acts on a platform for one db.failover step.
type Driver interface {
	// State returns the writer as the platform sees it, and whether the
	// platform considers the operation finished.
	State(ctx context.Context) (w Writer, settled bool, err error)
	// Trigger starts the failover; it may return before it is complete.
	Trigger(ctx context.Context, env *steps.Env) error
	// Close finishes what the driver started (after the step's checks).
	Close() error
}

// Opener is a registered driver.
type Opener interface {
	// Check validates the parameters (at validate time: no I/O).
	Check(p Params) error
	// Open connects to the platform for one step run.
	Open(ctx context.Context, env *steps.Env, p Params) (Driver, error)
}

var (
	mu      sync.RWMutex
	drivers = map[string]Opener{}
)

// Register makes a driver available under name. It panics on a duplicate
// or empty name, as database/sql.Register does.
func Register(name string, o Opener) {
	mu.Lock()
	defer mu.Unlock()
	if name == "" || o == nil {
		panic("failoverdriver: Register with an empty name or a nil driver")
	}
	if _, dup := drivers[name]; dup {
		panic("failoverdriver: Register called twice for driver " + name)
	}
	drivers[name] = o
}

// Lookup returns the driver registered under name.
func Lookup(name string) (Opener, bool) {
	mu.RLock()
	defer mu.RUnlock()
	o, ok := drivers[name]
	return o, ok
}

// Drivers returns the registered drivers' names, sorted.
func Drivers() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
