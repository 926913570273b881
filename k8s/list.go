package k8s

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/netward/netward/api"
)

// Cilium's custom resources.
var (
	CNPResource  = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnetworkpolicies"}
	CCNPResource = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumclusterwidenetworkpolicies"}
)

// Clients are the API clients netward uses.
type Clients struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	// Name describes the cluster in error messages and sources ("context kind-dev").
	Name string
}

// RESTConfig builds a client configuration from a kubeconfig file (empty: $KUBECONFIG or
// ~/.kube/config, else the in-cluster service account) and an optional context.
func RESTConfig(kubeconfig, kubeContext string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: kubeContext}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	name := kubeContext
	if name == "" {
		if raw, err := cc.RawConfig(); err == nil {
			name = raw.CurrentContext
		}
	}
	if name == "" {
		name = cfg.Host
	}
	return cfg, name, nil
}

// NewClients builds clients for a configuration.
func NewClients(cfg *rest.Config, name string) (*Clients, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Clients{Kube: kube, Dynamic: dyn, Name: name}, nil
}

// List reads every object netward needs. A cluster without Cilium's CRDs yields no Cilium
// policies and a note; any other error is returned.
func List(ctx context.Context, c *Clients) (*api.Objects, error) {
	objs := &api.Objects{}
	src := func(kind string, i int) api.Source {
		return api.Source{File: "cluster " + c.Name + " " + kind, Item: i + 1}
	}
	nss, err := c.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing namespaces in %s: %w", c.Name, err)
	}
	for i := range nss.Items {
		objs.Namespaces = append(objs.Namespaces, api.Object[corev1.Namespace]{Source: src("namespaces", i), Obj: &nss.Items[i]})
	}
	pods, err := c.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods in %s: %w", c.Name, err)
	}
	for i := range pods.Items {
		objs.Pods = append(objs.Pods, api.Object[corev1.Pod]{Source: src("pods", i), Obj: &pods.Items[i]})
	}
	nodes, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes in %s: %w", c.Name, err)
	}
	for i := range nodes.Items {
		objs.Nodes = append(objs.Nodes, api.Object[corev1.Node]{Source: src("nodes", i), Obj: &nodes.Items[i]})
	}
	nps, err := c.Kube.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing networkpolicies in %s: %w", c.Name, err)
	}
	for i := range nps.Items {
		objs.NetworkPolicies = append(objs.NetworkPolicies, api.Object[networkingv1.NetworkPolicy]{Source: src("networkpolicies", i), Obj: &nps.Items[i]})
	}
	var errs []error
	for _, gvr := range []schema.GroupVersionResource{CNPResource, CCNPResource} {
		list, err := c.Dynamic.Resource(gvr).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			objs.Notes = append(objs.Notes, fmt.Sprintf("cluster %s serves no %s (Cilium's CRDs are not installed)", c.Name, gvr.Resource))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s in %s: %w", gvr.Resource, c.Name, err)
		}
		for i := range list.Items {
			raw, err := json.Marshal(list.Items[i].Object)
			if err != nil {
				return nil, err
			}
			errs = append(errs, objs.AddRaw(src(gvr.Resource, i), raw)...)
		}
	}
	if len(errs) > 0 {
		return objs, &DecodeError{Errs: errs}
	}
	return objs, nil
}

// DecodeError carries the objects of the cluster that could not be decoded.
type DecodeError struct{ Errs []error }

func (e *DecodeError) Error() string {
	return fmt.Sprintf("%d object(s) in the cluster could not be decoded", len(e.Errs))
}
