package rdsapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/db/failoverdriver"
)

// endpoint_url lab:LABID on db.failover's aws-rds driver: the lab's RDS
// API for that lab's mariadb-pair, served in this process for the step's
// duration. Registered here so that steps/db knows no lab code; programs
// that want it link this package.
func init() { failoverdriver.RegisterRDSEndpoint("lab", openLabEndpoint) }

func openLabEndpoint(ctx context.Context, env *steps.Env, labID string) (failoverdriver.Endpoint, error) {
	pair, err := lab.OpenMariaDBPair(ctx, labID)
	if err != nil {
		return failoverdriver.Endpoint{}, fmt.Errorf("endpoint_url: %w", err)
	}
	pair.Logf = env.Logf
	backend := NewLab(pair)
	srv, err := Start(backend, lab.PairRegion)
	if err != nil {
		return failoverdriver.Endpoint{}, fmt.Errorf("endpoint_url: the lab's RDS API: %w", err)
	}
	env.Logf("the lab's RDS API serves at %s (lab %s)", srv.URL, pair.LabID)
	return failoverdriver.Endpoint{
		URL:         srv.URL,
		Region:      lab.PairRegion,
		Credentials: srv.Credentials(),
		// The lab finishes what it started (the old writer rejoining)
		// before its API goes away.
		Close: func() error { return errors.Join(backend.Wait(), srv.Close()) },
	}, nil
}
