package k8s

import (
	"context"
	"fmt"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// InstallCRDs creates (or updates) the CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy CRDs embedded in the binary and waits until the API server
// serves them. It is what `kubectl apply -f deploy/kubernetes/crds` does, for tests and
// tools that talk to the API server directly.
func InstallCRDs(ctx context.Context, cfg *rest.Config) error {
	ext, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds, err := EmbeddedCRDs()
	if err != nil {
		return err
	}
	client := ext.ApiextensionsV1().CustomResourceDefinitions()
	for _, f := range CRDFiles {
		var crd apiextv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(crds[f], &crd); err != nil {
			return fmt.Errorf("embedded CRD %s: %w", f, err)
		}
		_, err := client.Create(ctx, &crd, metav1.CreateOptions{FieldValidation: "Strict"})
		if apierrors.IsAlreadyExists(err) {
			cur, gerr := client.Get(ctx, crd.Name, metav1.GetOptions{})
			if gerr != nil {
				return fmt.Errorf("reading CRD %s: %w", crd.Name, gerr)
			}
			crd.ResourceVersion = cur.ResourceVersion
			_, err = client.Update(ctx, &crd, metav1.UpdateOptions{FieldValidation: "Strict"})
		}
		if err != nil {
			return fmt.Errorf("installing CRD %s: %w", crd.Name, err)
		}
		err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := client.Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range got.Status.Conditions {
				if c.Type == apiextv1.NamesAccepted && c.Status == apiextv1.ConditionFalse {
					return false, fmt.Errorf("names not accepted: %s", c.Message)
				}
				if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", crd.Name, err)
		}
	}
	return nil
}
