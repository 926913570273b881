package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/netward/netward/api"
)

func newValidateCommand() *cobra.Command {
	var in inputFlags
	cmd := &cobra.Command{
		Use:   "validate -f PATH...",
		Short: "Check manifests the way Cilium and the API server would; print every problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(in.files) == 0 && !in.fromCluster() {
				return &exitError{2, fmt.Errorf("no input: give manifests with -f FILE|DIR|- or a cluster with --kubeconfig/--context")}
			}
			objs, errs := in.objects(cmd)
			errs = append(errs, api.Validate(objs)...)
			for _, n := range objs.Notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
			}
			if len(errs) > 0 {
				printErrors(cmd.OutOrStdout(), errs)
				return &exitError{2, fmt.Errorf("%d invalid input(s)", len(errs))}
			}
			n := len(objs.NetworkPolicies) + len(objs.CNPs) + len(objs.CCNPs)
			fmt.Fprintf(cmd.OutOrStdout(), "valid: %d policies, %d pods, %d namespaces, %d nodes\n", n, len(objs.Pods), len(objs.Namespaces), len(objs.Nodes))
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&in.files, "filename", "f", nil, "manifest file, directory (read recursively) or - for stdin; repeatable")
	in.registerCluster(cmd)
	return cmd
}
