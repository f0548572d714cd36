package dbsec

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/rds"

	"github.com/opsdrill/opsdrill/steps"
)

// keyView is what KMS says of one key.
type keyView struct {
	ID       string
	State    string
	Manager  string
	Deletion *time.Time
}

// runAWS reads the instance's storage encryption, its KMS key, and its
// snapshots, through the AWS configuration (environment, shared files,
// roles) and endpoint_url as BaseEndpoint when set.
func (a *AtRest) runAWS(ctx context.Context, env *steps.Env) ([]finding, error) {
	var opts []func(*config.LoadOptions) error
	if a.Region != "" {
		opts = append(opts, config.WithRegion(a.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("region: not set and none in the AWS configuration (AWS_REGION, ~/.aws/config)")
	}
	rdsAPI := rds.NewFromConfig(cfg, func(o *rds.Options) {
		if a.EndpointURL != "" {
			o.BaseEndpoint = aws.String(a.EndpointURL)
		}
	})
	kmsAPI := kms.NewFromConfig(cfg, func(o *kms.Options) {
		if a.EndpointURL != "" {
			o.BaseEndpoint = aws.String(a.EndpointURL)
		}
	})
	out, err := rdsAPI.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(a.Instance)})
	if err != nil {
		return nil, fmt.Errorf("DescribeDBInstances %s: %w", a.Instance, err)
	}
	if len(out.DBInstances) != 1 {
		return nil, fmt.Errorf("DescribeDBInstances %s: %d instances in the answer", a.Instance, len(out.DBInstances))
	}
	inst := out.DBInstances[0]
	encrypted := aws.ToBool(inst.StorageEncrypted)
	keyID := aws.ToString(inst.KmsKeyId)
	env.SetOutput("storage_encrypted", encrypted)
	env.SetOutput("kms_key_id", keyID)
	var findings []finding
	add := func(what, fix string) { findings = append(findings, finding{What: what, Fix: fix}) }
	if !encrypted {
		add("instance "+a.Instance+" has StorageEncrypted false", "restore an encrypted copy: snapshot, copy the snapshot with a KMS key, restore from it")
	}

	keys := map[string]keyView{}
	describe := func(id string) (keyView, error) {
		if k, ok := keys[id]; ok {
			return k, nil
		}
		res, err := kmsAPI.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil {
			return keyView{}, fmt.Errorf("kms DescribeKey %s: %w", id, err)
		}
		m := res.KeyMetadata
		k := keyView{ID: id, State: string(m.KeyState), Manager: string(m.KeyManager), Deletion: m.DeletionDate}
		keys[id] = k
		return k, nil
	}
	judgeKey := func(k keyView, of string) {
		switch kmstypes.KeyState(k.State) {
		case kmstypes.KeyStateEnabled:
		case kmstypes.KeyStatePendingDeletion, kmstypes.KeyStatePendingReplicaDeletion:
			when := "soon"
			if k.Deletion != nil {
				when = "on " + k.Deletion.UTC().Format(time.RFC3339)
			}
			add("the KMS key of "+of+" is scheduled for deletion "+when+": the data becomes unrecoverable", "kms CancelKeyDeletion, then EnableKey")
		default:
			add("the KMS key of "+of+" is "+k.State+", not Enabled: the instance cannot read its data after a restart", "kms EnableKey (or import the key material again)")
		}
	}
	if keyID != "" {
		k, err := describe(keyID)
		if err != nil {
			return nil, err
		}
		env.SetOutput("key_state", k.State)
		env.SetOutput("key_manager", k.Manager)
		judgeKey(k, "instance "+a.Instance)
	} else {
		env.SetOutput("key_state", "")
		env.SetOutput("key_manager", "")
		if encrypted {
			add("instance "+a.Instance+" reports no KmsKeyId", "check the instance's encryption key")
		}
	}

	rows := [][]string{{"instance", a.Instance, yesNo(encrypted), keyID, keyState(keys, keyID)}}
	snaps := []any{}
	unenc := []any{}
	if a.Snapshots {
		var marker *string
		for {
			res, err := rdsAPI.DescribeDBSnapshots(ctx, &rds.DescribeDBSnapshotsInput{DBInstanceIdentifier: aws.String(a.Instance), Marker: marker})
			if err != nil {
				return nil, fmt.Errorf("DescribeDBSnapshots %s: %w", a.Instance, err)
			}
			for _, s := range res.DBSnapshots {
				id := aws.ToString(s.DBSnapshotIdentifier)
				enc := aws.ToBool(s.Encrypted)
				skey := aws.ToString(s.KmsKeyId)
				snaps = append(snaps, map[string]any{"id": id, "encrypted": enc, "kms_key_id": skey, "type": aws.ToString(s.SnapshotType)})
				if !enc {
					unenc = append(unenc, id)
					add("snapshot "+id+" is not encrypted", "copy it with a KMS key (CopyDBSnapshot --kms-key-id) and delete the plain copy")
				} else if skey != "" {
					k, err := describe(skey)
					if err != nil {
						return nil, err
					}
					judgeKey(k, "snapshot "+id)
				}
				rows = append(rows, []string{"snapshot", id, yesNo(enc), skey, keyState(keys, skey)})
			}
			if res.Marker == nil || *res.Marker == "" {
				break
			}
			marker = res.Marker
		}
	}
	env.SetOutput("snapshots", snaps)
	env.SetOutput("unencrypted_snapshots", unenc)
	env.AddEvidence(steps.TableEvidence("Storage encryption (AWS's view)", []string{"kind", "id", "encrypted", "KMS key", "key state"}, rows))
	return findings, nil
}

func keyState(keys map[string]keyView, id string) string {
	if k, ok := keys[id]; ok {
		return k.State
	}
	return ""
}
