package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/netward/netward/identity"
)

// stateVersion is the layout of the state file.
const stateVersion = 1

// stateFileName is the file under Config.StateDir.
const stateFileName = "endpoints.json"

// endpointRecord is a registered endpoint as the state file keeps it.
type endpointRecord struct {
	ID           uint32   `json:"id"`
	ContainerID  string   `json:"containerID"`
	Netns        string   `json:"netns"`
	IfName       string   `json:"ifName"`
	HostIfName   string   `json:"hostIfName"`
	Ifindex      uint32   `json:"ifindex"`
	PodNamespace string   `json:"podNamespace"`
	PodName      string   `json:"podName"`
	IPs          []string `json:"ips"`
}

func (r *endpointRecord) pod() string { return r.PodNamespace + "/" + r.PodName }

func (r *endpointRecord) addrs() []netip.Addr {
	var out []netip.Addr
	for _, s := range r.IPs {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// persisted is the state file: what a restarted agent needs to adopt the pinned state
// without a window: the endpoints (to re-attach and to know their policy maps), the identity
// numbers the pinned maps use, and the ipcache entries programmed (the pinned ipcache has no
// other list of what to remove).
type persisted struct {
	Version        int                    `json:"version"`
	Node           string                 `json:"node"`
	NextEndpointID uint32                 `json:"nextEndpointID"`
	PolicyRevision uint64                 `json:"policyRevision"`
	PolicyDigest   string                 `json:"policyDigest,omitempty"` // of the set at PolicyRevision
	Endpoints      []*endpointRecord      `json:"endpoints"`
	Identities     map[string]identity.ID `json:"identities"`
	IPCache        map[string]identity.ID `json:"ipcache"`
	// PolicyVersions (Kubernetes source) is the revision that first carried each policy
	// version ("uid/generation"): the localPolicyRevision of its status, kept across restarts.
	PolicyVersions map[string]uint64 `json:"policyVersions,omitempty"`
}

func readState(path string) (*persisted, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &persisted{Version: stateVersion, NextEndpointID: 1}, nil
	}
	if err != nil {
		return nil, err
	}
	var st persisted
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state file %s: version %d, want %d", path, st.Version, stateVersion)
	}
	if st.NextEndpointID == 0 {
		st.NextEndpointID = 1
	}
	for _, r := range st.Endpoints {
		if r.ID >= st.NextEndpointID {
			st.NextEndpointID = r.ID + 1
		}
	}
	return &st, nil
}

// writeState replaces the state file atomically (a new file renamed over the old one, so a
// killed agent leaves either version, never a torn one).
func writeState(path string, st *persisted) error {
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".endpoints-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
