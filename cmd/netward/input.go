package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/k8s"
	"github.com/netward/netward/policy"
)

// inputFlags are the flags every command that reads manifests shares.
type inputFlags struct {
	files          []string
	kubeconfig     string
	kubeContext    string
	cidrMatchMode  string
	allowLocalhost bool
}

func (f *inputFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&f.files, "filename", "f", nil, "manifest file, directory (read recursively) or - for stdin; repeatable")
	f.registerCluster(cmd)
	cmd.Flags().StringVar(&f.cidrMatchMode, "cidr-match-mode", "", `Cilium's policy-cidr-match-mode: "" (default), "nodes", "pods" or "nodes,pods"`)
	cmd.Flags().BoolVar(&f.allowLocalhost, "allow-localhost", true, "the local node reaches its pods under ingress default deny (Cilium's allow-localhost in Kubernetes mode)")
}

func (f *inputFlags) registerCluster(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "read the objects from a running cluster with this kubeconfig instead of files")
	cmd.Flags().StringVar(&f.kubeContext, "context", "", "kubeconfig context of the cluster to read (implies reading from a cluster)")
}

func (f *inputFlags) fromCluster() bool { return f.kubeconfig != "" || f.kubeContext != "" }

// objects reads the inputs: files, or a live cluster.
func (f *inputFlags) objects(cmd *cobra.Command) (*api.Objects, []error) {
	if !f.fromCluster() {
		return api.Load(f.files, cmd.InOrStdin())
	}
	if len(f.files) > 0 {
		return &api.Objects{}, []error{errors.New("give either manifests (-f) or a cluster (--kubeconfig/--context), not both")}
	}
	cfg, name, err := k8s.RESTConfig(f.kubeconfig, f.kubeContext)
	if err != nil {
		return &api.Objects{}, []error{err}
	}
	clients, err := k8s.NewClients(cfg, name)
	if err != nil {
		return &api.Objects{}, []error{err}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
	defer cancel()
	objs, err := k8s.List(ctx, clients)
	var de *k8s.DecodeError
	switch {
	case errors.As(err, &de):
		return objs, de.Errs
	case err != nil:
		return &api.Objects{}, []error{err}
	}
	return objs, nil
}

// load reads, validates and resolves the inputs. Any decoding or validation error is an
// exit-2 error listing every problem: netward never answers from a partial policy set.
func (f *inputFlags) load(cmd *cobra.Command) (*cluster.Cluster, error) {
	if len(f.files) == 0 && !f.fromCluster() {
		return nil, &exitError{2, errors.New("no input: give manifests with -f FILE|DIR|- or a cluster with --kubeconfig/--context")}
	}
	mode, ok := policy.ParseCIDRMatchMode(f.cidrMatchMode)
	if !ok {
		return nil, &exitError{2, fmt.Errorf("--cidr-match-mode %q: want \"\", nodes, pods or nodes,pods", f.cidrMatchMode)}
	}
	objs, errs := f.objects(cmd)
	verrs, warnings := api.ValidateLenient(objs)
	errs = append(errs, verrs...)
	for _, w := range warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	if len(errs) > 0 {
		printErrors(cmd.ErrOrStderr(), errs)
		return nil, &exitError{2, fmt.Errorf("%d invalid input(s); nothing was evaluated", len(errs))}
	}
	opts := cluster.Options{Policy: policy.Options{CIDRMatch: mode, AllowLocalhost: f.allowLocalhost}}
	c, err := cluster.Build(objs, opts)
	if err != nil {
		return nil, &exitError{2, err}
	}
	for _, n := range c.Notes { // the input's notes and the cluster's
		fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
	}
	return c, nil
}

func printErrors(w io.Writer, errs []error) {
	for _, e := range errs {
		fmt.Fprintln(w, "error:", e)
	}
}
