// Command netward-cni is netward's CNI plugin. A container runtime executes it with the CNI
// environment and the network configuration on stdin; see package cni and deploy/README.md.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/netward/netward/cni"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cni.Add,
		Del:    cni.Del,
		Check:  cni.Check,
		Status: cni.Status,
		GC:     cni.GC,
	}, version.All, "netward-cni: netward's CNI plugin (veth, host-local IPAM, endpoint registration with the netward agent)")
}
