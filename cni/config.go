package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

// Defaults of the network configuration.
const (
	DefaultIPAMDataDir = "/var/lib/netward/ipam"
	DefaultMTU         = 1500
	// PluginType is the "type" of the plugin in a configuration list: the binary's name.
	PluginType = "netward-cni"
)

// Gateway is the pod's next hop. It is not an address of anything: the pod has a permanent
// neighbour entry for it with the host veth's MAC (Cilium's scheme).
var Gateway = netip.MustParseAddr("169.254.1.1")

// NetConf is the plugin's network configuration.
type NetConf struct {
	types.NetConf

	// AgentSocket is the node agent's unix socket.
	AgentSocket string `json:"agentSocket"`
	// Subnet is this node's pod CIDR, IPv4.
	Subnet string `json:"subnet"`
	// IPAMDataDir holds the allocations, under <IPAMDataDir>/<network name>/.
	IPAMDataDir string `json:"ipamDataDir,omitempty"`
	// MTU of both veth ends.
	MTU int `json:"mtu,omitempty"`

	// SubnetPrefix is Subnet, parsed and masked.
	SubnetPrefix netip.Prefix `json:"-"`
}

// networkName is what CNI allows as a network name (libcni's rule), which also keeps it a
// safe single path element for the IPAM directory.
var networkName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// ParseNetConf decodes and validates the configuration a runtime passes on stdin. Unknown
// fields are tolerated (runtimes add runtimeConfig, prevResult, args, ...).
func ParseNetConf(data []byte) (*NetConf, error) {
	conf := &NetConf{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(conf); err != nil {
		return nil, fmt.Errorf("network configuration: %w", err)
	}
	var problems []string
	if conf.Name == "" {
		problems = append(problems, `"name" is required`)
	} else if !networkName.MatchString(conf.Name) {
		problems = append(problems, fmt.Sprintf(`"name" %q: want letters, digits, '_', '.', '-', starting with a letter or digit`, conf.Name))
	}
	if conf.AgentSocket == "" {
		problems = append(problems, `"agentSocket" is required (the node agent's unix socket, e.g. /run/netward/node-1.sock)`)
	}
	switch p, err := netip.ParsePrefix(conf.Subnet); {
	case conf.Subnet == "":
		problems = append(problems, `"subnet" is required (this node's pod CIDR, e.g. 10.244.1.0/24)`)
	case err != nil:
		problems = append(problems, fmt.Sprintf(`"subnet" %q: %v`, conf.Subnet, err))
	case !p.Addr().Is4():
		problems = append(problems, fmt.Sprintf(`"subnet" %q: only IPv4 pod CIDRs are supported`, conf.Subnet))
	case p.Bits() > 30:
		problems = append(problems, fmt.Sprintf(`"subnet" %q: too small, the prefix must be /30 or shorter`, conf.Subnet))
	case p.Contains(Gateway):
		problems = append(problems, fmt.Sprintf(`"subnet" %q contains the gateway address %s`, conf.Subnet, Gateway))
	default:
		conf.SubnetPrefix = p.Masked()
	}
	if conf.IPAMDataDir == "" {
		conf.IPAMDataDir = DefaultIPAMDataDir
	}
	switch {
	case conf.MTU == 0:
		conf.MTU = DefaultMTU
	case conf.MTU < 68 || conf.MTU > 65535:
		problems = append(problems, fmt.Sprintf(`"mtu" %d: want 68-65535`, conf.MTU))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("network configuration: %s", strings.Join(problems, "; "))
	}
	return conf, nil
}

// K8sArgs are the CNI_ARGS netward reads.
type K8sArgs struct {
	PodNamespace        string
	PodName             string
	PodInfraContainerID string
	PodUID              string
}

// ParseArgs parses CNI_ARGS: "KEY=VALUE;KEY=VALUE". Unknown keys are ignored (runtimes send
// IgnoreUnknown=1 and more); a pair without '=' is an error, as libcni's LoadArgs says.
func ParseArgs(s string) (K8sArgs, error) {
	var a K8sArgs
	if s == "" {
		return a, nil
	}
	for _, pair := range strings.Split(s, ";") {
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k == "" {
			return K8sArgs{}, fmt.Errorf("CNI_ARGS: invalid pair %q: want KEY=VALUE", pair)
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			a.PodNamespace = v
		case "K8S_POD_NAME":
			a.PodName = v
		case "K8S_POD_INFRA_CONTAINER_ID":
			a.PodInfraContainerID = v
		case "K8S_POD_UID":
			a.PodUID = v
		}
	}
	return a, nil
}
