package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/netward/netward/api"
)

// PolicyStatus is the status of a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy as
// netward writes it.
type PolicyStatus struct {
	// Conditions hold the Valid condition: True when the policy passed validation, False
	// with the validation error otherwise.
	Conditions []PolicyCondition `json:"conditions,omitempty"`
	// DerivativePolicies is Cilium's status of policies derived from this one (kept for
	// compatibility; netward does not write it).
	DerivativePolicies map[string]PolicyNodeStatus `json:"derivativePolicies,omitempty"`
	// Nodes is the status of the policy on each node, keyed by node name. Each node's agent
	// writes its own entry only.
	Nodes map[string]PolicyNodeStatus `json:"nodes,omitempty"`
}

// PolicyCondition is a condition of a policy (Cilium's NetworkPolicyCondition).
type PolicyCondition struct {
	// Type of the condition: Valid.
	Type string `json:"type"`
	// Status of the condition: True, False or Unknown.
	Status corev1.ConditionStatus `json:"status"`
	// LastTransitionTime is when the status last changed.
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
	// Reason for the last transition.
	Reason string `json:"reason,omitempty"`
	// Message: the validation error, or "Policy validation succeeded".
	Message string `json:"message,omitempty"`
}

// PolicyNodeStatus is the status of a policy on one node (Cilium's
// CiliumNetworkPolicyNodeStatus).
type PolicyNodeStatus struct {
	// OK is true when the node's agent parsed the policy and imported it.
	OK bool `json:"ok,omitempty"`
	// Error is why the node's agent could not import or enforce the policy.
	Error string `json:"error,omitempty"`
	// LastUpdated is when the node's agent last wrote this entry.
	LastUpdated metav1.Time `json:"lastUpdated,omitempty"`
	// Revision is the node's policy revision that first carried this version of the policy.
	Revision uint64 `json:"localPolicyRevision,omitempty"`
	// Enforcing is true when every endpoint on the node that the policy selects enforces it.
	Enforcing bool `json:"enforcing,omitempty"`
	// Annotations are the policy's annotations of the version the node realized.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ConditionValid is the type of the validation condition (Cilium's PolicyConditionValid).
const ConditionValid = "Valid"

// ValidMessage is the Valid condition's message for a valid policy, as Cilium writes it.
const ValidMessage = "Policy validation succeeded"

// PolicyRef names a CiliumNetworkPolicy (Kind api.KindCNP, with a namespace) or a
// CiliumClusterwideNetworkPolicy (api.KindCCNP, no namespace).
type PolicyRef struct {
	Kind      string
	Namespace string
	Name      string
}

func (r PolicyRef) String() string {
	if r.Namespace != "" {
		return r.Kind + " " + r.Namespace + "/" + r.Name
	}
	return r.Kind + " " + r.Name
}

func (r PolicyRef) resource() (schema.GroupVersionResource, error) {
	switch r.Kind {
	case api.KindCNP:
		if r.Namespace == "" {
			return schema.GroupVersionResource{}, fmt.Errorf("%s: a CiliumNetworkPolicy needs a namespace", r)
		}
		return CNPResource, nil
	case api.KindCCNP:
		if r.Namespace != "" {
			return schema.GroupVersionResource{}, fmt.Errorf("%s: a CiliumClusterwideNetworkPolicy has no namespace", r)
		}
		return CCNPResource, nil
	}
	return schema.GroupVersionResource{}, fmt.Errorf("%s: not a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy", r)
}

// NodeStatus is what one node's agent reports about one policy.
type NodeStatus struct {
	// OK: the policy was parsed and imported into the node's policy repository.
	OK bool
	// Error: why it was not (or why it cannot be enforced).
	Error string
	// Invalid marks Error as a validation error of the policy itself: every node finds the
	// same one, and the writer also sets the policy's Valid condition to False with it. A
	// report with OK sets the Valid condition to True; other reports leave it alone.
	Invalid bool
	// Enforcing: every endpoint of the node the policy selects enforces it.
	Enforcing bool
	// Revision is the node's policy revision that first carried this version of the policy.
	Revision uint64
	// LastUpdated defaults to the time of the report.
	LastUpdated time.Time
	// Annotations of the policy version that was realized (nil: none).
	Annotations map[string]string
}

// StatusWriter writes per-node policy status into the status subresource of
// CiliumNetworkPolicies and CiliumClusterwideNetworkPolicies.
//
// Every agent writes only its own node's entry, .status.nodes.<node>, with a JSON merge
// patch that names no other node: concurrent agents never overwrite each other's entries,
// and no resourceVersion precondition is needed. The Valid condition, which every node
// computes identically from the policy alone, is written only when it changes (Cilium's
// short-circuit), with the object's resourceVersion as a precondition so that a concurrent
// change of the condition list is retried instead of lost.
type StatusWriter struct {
	client dynamic.Interface
	// Now is the clock (tests replace it).
	Now func() time.Time
}

// NewStatusWriter returns a writer using a dynamic client.
func NewStatusWriter(client dynamic.Interface) *StatusWriter {
	return &StatusWriter{client: client, Now: time.Now}
}

// maxConflictRetries bounds the retries of a condition update that raced with another.
const maxConflictRetries = 5

// Report merges nodeName's status of the policy ref into the policy's status. A report
// that changes nothing (the same entry apart from the time, the Valid condition already
// right) writes nothing. A policy that no longer exists is not an error (it was deleted
// while the agent worked on it): Report returns nil.
func (w *StatusWriter) Report(ctx context.Context, ref PolicyRef, nodeName string, st NodeStatus) error {
	gvr, err := ref.resource()
	if err != nil {
		return err
	}
	if nodeName == "" {
		return fmt.Errorf("%s: status report without a node name", ref)
	}
	if st.LastUpdated.IsZero() {
		st.LastUpdated = w.Now()
	}
	res := w.client.Resource(gvr)
	var ri dynamic.ResourceInterface = res
	if ref.Namespace != "" {
		ri = res.Namespace(ref.Namespace)
	}
	for attempt := 0; ; attempt++ {
		cur, err := ri.Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", ref, err)
		}
		patch, err := w.statusPatch(cur.Object, nodeName, st)
		if err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
		if patch == nil {
			return nil // already there: no write, no watch event for the other agents
		}
		_, err = ri.Patch(ctx, ref.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "netward-agent"}, "status")
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err) && attempt < maxConflictRetries:
			continue
		}
		return fmt.Errorf("writing the status of %s for node %s: %w", ref, nodeName, err)
	}
}

// RemoveNode deletes nodeName's entry from the policy's status (a node that left the
// cluster).
func (w *StatusWriter) RemoveNode(ctx context.Context, ref PolicyRef, nodeName string) error {
	gvr, err := ref.resource()
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"nodes": map[string]any{nodeName: nil}}})
	if err != nil {
		return err
	}
	res := w.client.Resource(gvr)
	var ri dynamic.ResourceInterface = res
	if ref.Namespace != "" {
		ri = res.Namespace(ref.Namespace)
	}
	_, err = ri.Patch(ctx, ref.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "netward-agent"}, "status")
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing node %s from the status of %s: %w", nodeName, ref, err)
	}
	return nil
}

// statusPatch builds the merge patch for one node's entry (and the Valid condition when it
// changes) against the current object.
func (w *StatusWriter) statusPatch(cur map[string]any, nodeName string, st NodeStatus) ([]byte, error) {
	var status PolicyStatus
	if raw, ok := cur["status"]; ok && raw != nil {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw.(map[string]any), &status); err != nil {
			return nil, fmt.Errorf("reading the current status: %w", err)
		}
	}
	// Every field is written explicitly: a merge patch keeps what it does not mention, so a
	// false or empty value must be sent as false or null, not left out.
	entry := map[string]any{
		"ok":                  st.OK,
		"enforcing":           st.Enforcing,
		"localPolicyRevision": st.Revision,
		"lastUpdated":         st.LastUpdated.UTC().Truncate(time.Second).Format(time.RFC3339),
		"error":               nil,
		"annotations":         nil,
	}
	if st.Error != "" {
		entry["error"] = st.Error
	}
	// Annotations are a map, which a merge patch merges key by key: keys this node wrote
	// before and no longer has are deleted explicitly.
	if len(st.Annotations) > 0 {
		ann := map[string]any{}
		for k := range status.Nodes[nodeName].Annotations {
			ann[k] = nil
		}
		for k, v := range st.Annotations {
			ann[k] = v
		}
		entry["annotations"] = ann
	}
	statusPatch := map[string]any{}
	patch := map[string]any{"status": statusPatch}
	if old, ok := status.Nodes[nodeName]; !ok || !sameEntry(old, st) {
		statusPatch["nodes"] = map[string]any{nodeName: entry}
	}
	if conds, changed := validCondition(status.Conditions, st, w.Now()); changed {
		statusPatch["conditions"] = conds
		// The condition list is replaced as a whole: guard it against a concurrent writer.
		if md, ok := cur["metadata"].(map[string]any); ok {
			if rv, ok := md["resourceVersion"].(string); ok && rv != "" {
				patch["metadata"] = map[string]any{"resourceVersion": rv}
			}
		}
	}
	if len(statusPatch) == 0 {
		return nil, nil
	}
	return json.Marshal(patch)
}

// sameEntry reports whether a node's stored entry already says what st says (the time of
// the report aside).
func sameEntry(old PolicyNodeStatus, st NodeStatus) bool {
	return old.OK == st.OK && old.Error == st.Error && old.Enforcing == st.Enforcing &&
		old.Revision == st.Revision && maps.Equal(old.Annotations, st.Annotations)
}

// validCondition returns the condition list with the Valid condition that st implies, and
// whether it differs from conds. Like Cilium's validator it leaves the list alone when the
// condition already has the wanted status and message.
func validCondition(conds []PolicyCondition, st NodeStatus, now time.Time) ([]PolicyCondition, bool) {
	var want corev1.ConditionStatus
	var msg string
	switch {
	case st.Invalid:
		want, msg = corev1.ConditionFalse, st.Error
	case st.OK:
		want, msg = corev1.ConditionTrue, ValidMessage
	default:
		return conds, false
	}
	idx := -1
	for i, c := range conds {
		if c.Type == ConditionValid {
			if c.Status == want && c.Message == msg {
				return conds, false
			}
			idx = i
			break
		}
	}
	t := metav1.NewTime(now.UTC().Truncate(time.Second))
	nc := PolicyCondition{Type: ConditionValid, Status: want, LastTransitionTime: &t, Message: msg}
	out := make([]PolicyCondition, 0, len(conds)+1)
	out = append(out, conds...)
	if idx >= 0 {
		out[idx] = nc
	} else {
		out = append(out, nc)
	}
	return out, true
}

// StatusMessage renders a validation error of one object for its status: every field error
// ("spec.ingress[0].toPorts[0].ports[0].port: Invalid value: ..."), joined with "; ", without
// the object's own name and source, which the status does not need.
func StatusMessage(err error) string {
	var oe *api.ObjectError
	if !errors.As(err, &oe) {
		return err.Error()
	}
	parts := make([]string, len(oe.Errs))
	for i, fe := range oe.Errs {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

// ReadPolicyStatus decodes the status of a policy object read through the dynamic client.
func ReadPolicyStatus(obj map[string]any) (PolicyStatus, error) {
	var st PolicyStatus
	raw, ok := obj["status"].(map[string]any)
	if !ok {
		return st, nil
	}
	err := runtime.DefaultUnstructuredConverter.FromUnstructured(maps.Clone(raw), &st)
	return st, err
}
