package rdsapi

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Memory is a Backend holding Multi-AZ instances and clusters in memory,
// standing in for AWS in tests of RDS clients: a reboot with failover
// keeps the instance "rebooting" for FailoverTime, then swaps its zones; a
// cluster failover keeps the cluster "failing-over", then moves the writer.
// StuckWriter is the fault a drill must catch: everything completes but
// the writer stays where it was.
type Memory struct {
	// FailoverTime is how long a reboot or failover takes.
	FailoverTime time.Duration
	// AZLag is how long after a failover completed DescribeDBInstances
	// still reports the old zones, as AWS does ("within a few seconds to
	// <10 minutes").
	AZLag time.Duration
	// StuckWriter makes reboots and failovers complete without switching.
	StuckWriter bool

	mu        sync.Mutex
	instances map[string]*memInstance
	clusters  map[string]*memCluster
	calls     []string
	now       func() time.Time
	events    EventLog
}

type memInstance struct {
	Instance
	until    time.Time
	failover bool
	// swapAt is when the zones of a completed failover show.
	swapAt time.Time
	swap   bool
}

type memCluster struct {
	Cluster
	azs    map[string]string // member -> zone
	until  time.Time
	target string
}

// NewMemory returns an empty Memory backend.
func NewMemory() *Memory {
	return &Memory{instances: map[string]*memInstance{}, clusters: map[string]*memCluster{}, now: time.Now}
}

// AddInstance adds or replaces an instance.
func (m *Memory) AddInstance(i Instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.instances[i.ID] = &memInstance{Instance: i}
}

// AddCluster adds a cluster; zones gives each member's availability zone.
// Members are also served as instances.
func (m *Memory) AddCluster(c Cluster, zones map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clusters[c.ID] = &memCluster{Cluster: c, azs: zones}
	for _, mem := range c.Members {
		m.instances[mem.InstanceID] = &memInstance{Instance: Instance{ID: mem.InstanceID, Status: "available", Engine: c.Engine,
			AZ: zones[mem.InstanceID], ClusterID: c.ID, Address: c.Endpoint, Port: c.Port}}
	}
}

// Calls returns the actions received so far, as "Action id".
func (m *Memory) Calls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}

// settle completes operations whose time has come. Call with mu held.
func (m *Memory) settle() {
	now := m.now()
	for _, i := range m.instances {
		if i.Status != "available" && !now.Before(i.until) {
			if i.failover && !m.StuckWriter {
				i.swap, i.swapAt = true, i.until.Add(m.AZLag)
			}
			m.event(i.ID, i.until, MsgRestarted, "availability")
			if i.failover {
				m.event(i.ID, i.until, MsgFailoverCompleted, "failover")
			}
			i.Status, i.failover = "available", false
		}
		if i.swap && !now.Before(i.swapAt) {
			i.AZ, i.SecondaryAZ, i.swap = i.SecondaryAZ, i.AZ, false
		}
	}
	for _, c := range m.clusters {
		if c.Status != "available" && !now.Before(c.until) {
			if !m.StuckWriter {
				for k := range c.Members {
					c.Members[k].Writer = c.Members[k].InstanceID == c.target
				}
			}
			c.Status, c.target = "available", ""
		}
	}
}

// Instances implements Backend.
func (m *Memory) Instances(_ context.Context, id string) ([]Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "DescribeDBInstances "+id)
	m.settle()
	if id != "" {
		i, ok := m.instances[id]
		if !ok {
			return nil, errInstanceNotFound(id)
		}
		return []Instance{i.Instance}, nil
	}
	var out []Instance
	for _, i := range m.instances {
		out = append(out, i.Instance)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

// Reboot implements Backend.
func (m *Memory) Reboot(_ context.Context, id string, forceFailover bool) (Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "RebootDBInstance "+id)
	m.settle()
	i, ok := m.instances[id]
	if !ok {
		return Instance{}, errInstanceNotFound(id)
	}
	if i.Status != "available" {
		return Instance{}, errInstanceState(id, i.Status)
	}
	if forceFailover && !i.MultiAZ {
		return Instance{}, &Error{Status: http.StatusBadRequest, Code: "InvalidParameterCombination",
			Message: "Cannot reboot with failover: the instance is not configured as Multi-AZ."}
	}
	i.Status, i.until, i.failover = "rebooting", m.now().Add(m.FailoverTime), forceFailover
	if forceFailover {
		m.event(id, m.now(), MsgFailoverStarted, "failover")
	} else {
		m.event(id, m.now(), MsgRebootRequested, "availability")
	}
	return i.Instance, nil
}

func (m *Memory) event(id string, at time.Time, msg string, category string) {
	m.events.Add(Event{SourceID: id, SourceType: "db-instance", Message: msg, Categories: []string{category}, Date: at})
}

// Events implements Backend.
func (m *Memory) Events(_ context.Context, sourceID, sourceType string, start, end time.Time) ([]Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "DescribeEvents "+sourceID)
	m.settle()
	return m.events.Select(sourceID, sourceType, start, end), nil
}

// Clusters implements Backend.
func (m *Memory) Clusters(_ context.Context, id string) ([]Cluster, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "DescribeDBClusters "+id)
	m.settle()
	if id != "" {
		c, ok := m.clusters[id]
		if !ok {
			return nil, errClusterNotFound(id)
		}
		return []Cluster{c.copy()}, nil
	}
	var out []Cluster
	for _, c := range m.clusters {
		out = append(out, c.copy())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

func (c *memCluster) copy() Cluster {
	out := c.Cluster
	out.Members = append([]Member(nil), c.Members...)
	return out
}

// FailoverCluster implements Backend.
func (m *Memory) FailoverCluster(_ context.Context, id, target string) (Cluster, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "FailoverDBCluster "+id)
	m.settle()
	c, ok := m.clusters[id]
	if !ok {
		return Cluster{}, errClusterNotFound(id)
	}
	if c.Status != "available" {
		return Cluster{}, errClusterState(id, c.Status)
	}
	if target == "" {
		for _, mem := range c.Members {
			if !mem.Writer {
				target = mem.InstanceID
				break
			}
		}
	}
	found := false
	for _, mem := range c.Members {
		if mem.InstanceID == target {
			found = true
			if mem.Writer {
				return Cluster{}, &Error{Status: http.StatusBadRequest, Code: "InvalidParameterValue", Message: target + " is already the writer."}
			}
		}
	}
	if !found {
		return Cluster{}, errInstanceNotFound(target)
	}
	c.Status, c.until, c.target = "failing-over", m.now().Add(m.FailoverTime), target
	return c.copy(), nil
}
