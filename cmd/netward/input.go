package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/policy"
)

// inputFlags are the flags every command that reads manifests shares.
type inputFlags struct {
	files          []string
	cidrMatchMode  string
	allowLocalhost bool
}

func (f *inputFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&f.files, "filename", "f", nil, "manifest file, directory (read recursively) or - for stdin; repeatable")
	cmd.Flags().StringVar(&f.cidrMatchMode, "cidr-match-mode", "", `Cilium's policy-cidr-match-mode: "" (default), "nodes", "pods" or "nodes,pods"`)
	cmd.Flags().BoolVar(&f.allowLocalhost, "allow-localhost", true, "the local node reaches its pods under ingress default deny (Cilium's allow-localhost in Kubernetes mode)")
}

// load reads, validates and resolves the inputs. Any decoding or validation error is an
// exit-2 error listing every problem: netward never answers from a partial policy set.
func (f *inputFlags) load(cmd *cobra.Command) (*cluster.Cluster, error) {
	if len(f.files) == 0 {
		return nil, &exitError{2, errors.New("no input: give manifests with -f FILE|DIR|-")}
	}
	mode, ok := policy.ParseCIDRMatchMode(f.cidrMatchMode)
	if !ok {
		return nil, &exitError{2, fmt.Errorf("--cidr-match-mode %q: want \"\", nodes, pods or nodes,pods", f.cidrMatchMode)}
	}
	objs, errs := api.Load(f.files, cmd.InOrStdin())
	errs = append(errs, api.Validate(objs)...)
	if len(errs) > 0 {
		printErrors(cmd.ErrOrStderr(), errs)
		return nil, &exitError{2, fmt.Errorf("%d invalid input(s); nothing was evaluated", len(errs))}
	}
	for _, n := range objs.Notes {
		fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
	}
	opts := cluster.Options{Policy: policy.Options{CIDRMatch: mode, AllowLocalhost: f.allowLocalhost}}
	c, err := cluster.Build(objs, opts)
	if err != nil {
		return nil, &exitError{2, err}
	}
	return c, nil
}

func printErrors(w io.Writer, errs []error) {
	for _, e := range errs {
		fmt.Fprintln(w, "error:", e)
	}
}
