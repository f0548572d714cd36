package dbsec

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

const (
	keyMain  = "arn:aws:kms:ap-south-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	keyOther = "arn:aws:kms:ap-south-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"
)

// TestAtRestAWS runs db.at_rest's aws-rds driver through the real SDK
// against the fake RDS and KMS endpoints, with each fault injected.
func TestAtRestAWS(t *testing.T) {
	deletion := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		fault   func(f *fakeAWS)
		want    string // failure message part; "" passes
		outputs map[string]any
	}{
		{name: "encrypted, key enabled, every snapshot encrypted", outputs: map[string]any{"storage_encrypted": true, "key_state": "Enabled", "encrypted": true}},
		{name: "storage not encrypted", fault: func(f *fakeAWS) { f.instances["testrds"] = fakeInstance{} },
			want: "instance testrds has StorageEncrypted false", outputs: map[string]any{"storage_encrypted": false}},
		{name: "key pending deletion", fault: func(f *fakeAWS) {
			f.keys[keyMain] = fakeKey{State: "PendingDeletion", Manager: "CUSTOMER", Deletion: deletion}
		},
			want: "scheduled for deletion on 2026-12-08T00:00:00Z", outputs: map[string]any{"key_state": "PendingDeletion"}},
		{name: "key disabled", fault: func(f *fakeAWS) { f.keys[keyMain] = fakeKey{State: "Disabled", Manager: "CUSTOMER"} },
			want: "is Disabled, not Enabled"},
		{name: "an unencrypted snapshot on the second page", fault: func(f *fakeAWS) { f.snapshots[2].Encrypted, f.snapshots[2].KeyID = false, "" },
			want: "snapshot manual-before-upgrade is not encrypted", outputs: map[string]any{"unencrypted_snapshots": []any{"manual-before-upgrade"}}},
		{name: "a snapshot's own key pending deletion", fault: func(f *fakeAWS) { f.keys[keyOther] = fakeKey{State: "PendingDeletion", Manager: "CUSTOMER"} },
			want: "the KMS key of snapshot copied-from-eu is scheduled for deletion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAWS(t)
			f.instances["testrds"] = fakeInstance{Encrypted: true, KeyID: keyMain}
			f.keys[keyMain] = fakeKey{State: "Enabled", Manager: "CUSTOMER"}
			f.keys[keyOther] = fakeKey{State: "Enabled", Manager: "AWS"}
			f.snapshots = []fakeSnapshot{
				{ID: "rds:testrds-2026-11-30", Instance: "testrds", Type: "automated", Encrypted: true, KeyID: keyMain},
				{ID: "rds:testrds-2026-11-29", Instance: "testrds", Type: "automated", Encrypted: true, KeyID: keyMain},
				{ID: "manual-before-upgrade", Instance: "testrds", Type: "manual", Encrypted: true, KeyID: keyMain},
				{ID: "copied-from-eu", Instance: "testrds", Type: "manual", Encrypted: true, KeyID: keyOther},
				{ID: "other-instance-snap", Instance: "other", Type: "manual"},
			}
			if tt.fault != nil {
				tt.fault(f)
			}
			a := newAtRest().(*AtRest)
			a.Driver, a.Instance, a.EndpointURL = driverAWSRDS, "testrds", f.srv.URL
			require.NoError(t, a.Validate())
			env := steps.NewEnv("s", "at_rest", t.TempDir(), steps.Hooks{})
			err := a.Run(context.Background(), env)
			out := env.Outputs()
			if tt.want == "" {
				require.NoError(t, err)
				assert.Len(t, out["snapshots"], 4, "every page read, only this instance's")
			} else {
				require.Error(t, err)
				assert.True(t, steps.IsFailure(err), err)
				assert.Contains(t, err.Error(), tt.want)
				assert.Equal(t, false, out["encrypted"])
			}
			for k, v := range tt.outputs {
				assert.Equal(t, v, out[k], k)
			}
			assert.Contains(t, f.calls, "TrentService.DescribeKey")
			assert.Contains(t, f.calls, "DescribeDBSnapshots")
		})
	}
}

// TestAtRestAWSErrors: what cannot be checked is an error, not a verdict.
func TestAtRestAWSErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fakeAWS, a *AtRest)
		want  string
	}{
		{"no such instance", func(t *testing.T, f *fakeAWS, a *AtRest) { a.Instance = "nosuch" }, "DBInstanceNotFound"},
		{"wrong secret key", func(t *testing.T, f *fakeAWS, a *AtRest) { t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret") }, "SignatureDoesNotMatch"},
		{"unknown KMS key", func(t *testing.T, f *fakeAWS, a *AtRest) { delete(f.keys, keyMain) }, "NotFoundException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAWS(t)
			f.instances["testrds"] = fakeInstance{Encrypted: true, KeyID: keyMain}
			f.keys[keyMain] = fakeKey{State: "Enabled", Manager: "CUSTOMER"}
			a := newAtRest().(*AtRest)
			a.Driver, a.Instance, a.EndpointURL = driverAWSRDS, "testrds", f.srv.URL
			tt.setup(t, f, a)
			err := a.Run(context.Background(), steps.NewEnv("s", "at_rest", t.TempDir(), steps.Hooks{}))
			require.Error(t, err)
			assert.False(t, steps.IsFailure(err))
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestAtRestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(a *AtRest)
		want   string
	}{
		{"sql needs a dsn", func(a *AtRest) { a.DSN = "" }, "dsn: missing"},
		{"postgres has no TDE to read", func(a *AtRest) { a.DSN = "postgres://u:p@db:5432/app" }, "PostgreSQL has no built-in encryption at rest"},
		{"tls in the dsn", func(a *AtRest) { a.DSN = "u:p@tcp(db:3306)/drill?tls=true" }, "not tls= in the DSN"},
		{"bad host reference", func(a *AtRest) { a.DataDirHosts = []string{"db-a"} }, `host: "db-a" is not a host reference`},
		{"canary table without column", func(a *AtRest) { a.CanaryTable = "orders" }, "canary_table and canary_column go together"},
		{"backup without datadir host", func(a *AtRest) { a.DataDirHosts = nil; a.KeyBackupPath = "/srv/key" }, "needs datadir_hosts"},
		{"table name with a quote", func(a *AtRest) { a.Tables = []string{"x`; DROP"} }, "not a plain table name"},
		{"aws-rds needs an instance", func(a *AtRest) { a.Driver = driverAWSRDS }, "instance: missing"},
		{"unknown driver", func(a *AtRest) { a.Driver = "tde" }, "driver: must be sql or aws-rds"},
		{"bad verify", func(a *AtRest) { a.Verify = "yes" }, "verify: must be full, ca or none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAtRest().(*AtRest)
			a.DSN = "drill:s3cret-pw@tcp(db:3306)/drill"
			a.DataDirHosts = []string{"lab:db-a"}
			tt.mutate(a)
			err := a.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "s3cret-pw")
		})
	}
}
