package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "netward",
		Short: "Resolve, explain and enforce Kubernetes and Cilium network policies",
		Long: `netward reads Kubernetes NetworkPolicy, CiliumNetworkPolicy and
CiliumClusterwideNetworkPolicy objects, unchanged, and resolves them exactly as Cilium v1.20
does: the same identities, the same allow/deny/L7 merge rules, the same policy-map lookup.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newValidateCommand(), newTraceCommand(), newCheckCommand(), newMapCommand(), newAuditCommand(), newMatrixCommand())
	root.AddCommand(newDiffCommand())
	root.AddCommand(newAgentCommand(), newEndpointCommand(), newObserveCommand(), newStatusCommand())
	root.AddCommand(newInstallCommand())
	return root
}
