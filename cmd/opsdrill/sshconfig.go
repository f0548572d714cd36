package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/opsdrill/opsdrill/steps/host"
)

// sshConfigEnv names the OpenSSH client config when --ssh-config is not
// given.
const sshConfigEnv = "OPSDRILL_SSH_CONFIG"

func addSSHConfigFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "ssh-config", "", "OpenSSH client config that ssh:// host names are resolved through (default $"+sshConfigEnv+", else ~/.ssh/config)")
	_ = cmd.MarkFlagFilename("ssh-config")
}

// useSSHConfig points the run's host pool at the config and reads it now,
// so a broken file is bad input before anything runs.
func useSSHConfig(path string) error {
	if path == "" {
		path = os.Getenv(sshConfigEnv)
	}
	host.Default.SSHConfig = path
	if err := host.Default.CheckSSHConfig(); err != nil {
		return &exitError{code: exitBadInput, err: err}
	}
	return nil
}
