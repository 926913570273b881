package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func cniErr(code uint, format string, a ...any) *types.Error {
	return types.NewError(code, "netward-cni: "+fmt.Sprintf(format, a...), "")
}

func confErr(err error) *types.Error { return cniErr(types.ErrInvalidNetworkConfig, "%v", err) }

func hostRoute(ip netip.Addr, linkIndex int) *netlink.Route {
	return &netlink.Route{LinkIndex: linkIndex, Dst: ipNet(netip.PrefixFrom(ip, 32)), Scope: netlink.SCOPE_LINK}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// Add is CNI ADD: veth, address, routes, registration with the agent; undone on failure.
func Add(args *skel.CmdArgs) error {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return confErr(err)
	}
	k8s, err := ParseArgs(args.Args)
	if err != nil {
		return cniErr(types.ErrInvalidEnvironmentVariables, "%v", err)
	}
	if args.Netns == "" {
		return cniErr(types.ErrInvalidNetNS, "CNI_NETNS is required for ADD")
	}
	podNS, err := netns.GetFromPath(args.Netns)
	if err != nil {
		return cniErr(types.ErrInvalidNetNS, "opening netns %s: %v", args.Netns, err)
	}
	defer podNS.Close()

	var undo []func()
	fail := func(e *types.Error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return e
	}

	ipam, err := OpenIPAM(conf.IPAMDataDir, conf.Name, conf.SubnetPrefix)
	if err != nil {
		return cniErr(types.ErrInternal, "%v", err)
	}
	ip, err := ipam.Allocate(args.ContainerID, args.IfName)
	if err != nil {
		return cniErr(types.ErrInternal, "%v", err)
	}
	undo = append(undo, func() { ipam.Release(args.ContainerID, args.IfName) })

	hostName := HostVethName(args.ContainerID, args.IfName)
	// A previous ADD of the same attachment (the name is derived from it) is replaced.
	if old, err := netlink.LinkByName(hostName); err == nil {
		if err := netlink.LinkDel(old); err != nil {
			return fail(cniErr(types.ErrInternal, "removing the previous veth %s: %v", hostName, err))
		}
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostName, MTU: conf.MTU},
		PeerName:      args.IfName,
		PeerMTU:       uint32(conf.MTU),
		PeerNamespace: netlink.NsFd(int(podNS)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fail(cniErr(types.ErrInternal, "creating veth %s <-> %s in %s: an interface of that name exists: %v", hostName, args.IfName, args.Netns, err))
		}
		return fail(cniErr(types.ErrInternal, "creating veth %s <-> %s in %s: %v", hostName, args.IfName, args.Netns, err))
	}
	undo = append(undo, func() {
		if l, err := netlink.LinkByName(hostName); err == nil {
			netlink.LinkDel(l)
		}
	})
	hostLink, err := netlink.LinkByName(hostName)
	if err != nil {
		return fail(cniErr(types.ErrInternal, "veth %s: %v", hostName, err))
	}
	if err := netlink.LinkSetUp(hostLink); err != nil {
		return fail(cniErr(types.ErrInternal, "setting %s up: %v", hostName, err))
	}
	hostMAC := hostLink.Attrs().HardwareAddr

	podMAC, err := setupPodSide(podNS, args.IfName, ip, hostMAC)
	if err != nil {
		return fail(cniErr(types.ErrInternal, "pod side %s in %s: %v", args.IfName, args.Netns, err))
	}

	hostIdx := hostLink.Attrs().Index
	if err := netlink.RouteReplace(hostRoute(ip, hostIdx)); err != nil {
		return fail(cniErr(types.ErrInternal, "route %s/32 dev %s: %v", ip, hostName, err))
	}
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: hostIdx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: net.IP(ip.AsSlice()), HardwareAddr: podMAC}); err != nil {
		return fail(cniErr(types.ErrInternal, "neighbour %s on %s: %v", ip, hostName, err))
	}
	if err := enableForwarding(); err != nil {
		return fail(cniErr(types.ErrInternal, "%v", err))
	}

	agent := NewAgent(conf.AgentSocket)
	req := EndpointRequest{
		ContainerID: args.ContainerID, Netns: args.Netns, IfName: args.IfName, HostIfName: hostName,
		PodNamespace: k8s.PodNamespace, PodName: k8s.PodName, IPs: []string{ip.String()},
	}
	if _, err := agent.Register(context.Background(), req); err != nil {
		if IsUnreachable(err) {
			return fail(cniErr(types.ErrTryAgainLater, "registering the endpoint: %v", err))
		}
		// The agent may hold a partial registration: withdraw it (best effort).
		agent.Deregister(context.Background(), args.ContainerID)
		return fail(cniErr(types.ErrInternal, "registering the endpoint: %v", err))
	}

	result := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hostName, Mac: hostMAC.String()},
			{Name: args.IfName, Mac: podMAC.String(), Mtu: conf.MTU, Sandbox: args.Netns},
		},
		IPs: []*current.IPConfig{{
			Interface: current.Int(1),
			Address:   *ipNet(netip.PrefixFrom(ip, 32)),
			Gateway:   net.IP(Gateway.AsSlice()),
		}},
		Routes: []*types.Route{
			{Dst: *ipNet(netip.PrefixFrom(Gateway, 32)), Scope: current.Int(int(netlink.SCOPE_LINK))},
			{Dst: *ipNet(netip.MustParsePrefix("0.0.0.0/0")), GW: net.IP(Gateway.AsSlice())},
		},
	}
	return types.PrintResult(result, conf.CNIVersion)
}

// setupPodSide configures the pod end inside its netns: up (a veth created into another
// netns starts down), /32 address, the gateway's neighbour entry and the two routes.
func setupPodSide(podNS netns.NsHandle, ifName string, ip netip.Addr, hostMAC net.HardwareAddr) (net.HardwareAddr, error) {
	h, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByName(ifName)
	if err != nil {
		return nil, err
	}
	if err := h.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("setting up: %w", err)
	}
	idx := l.Attrs().Index
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(ip, 32))}); err != nil {
		return nil, fmt.Errorf("address %s/32: %w", ip, err)
	}
	gw := net.IP(Gateway.AsSlice())
	if err := h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: hostMAC}); err != nil {
		return nil, fmt.Errorf("neighbour %s: %w", Gateway, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipNet(netip.PrefixFrom(Gateway, 32)), Scope: netlink.SCOPE_LINK}); err != nil {
		return nil, fmt.Errorf("route %s: %w", Gateway, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: gw, Scope: netlink.SCOPE_UNIVERSE}); err != nil {
		return nil, fmt.Errorf("default route via %s: %w", Gateway, err)
	}
	return l.Attrs().HardwareAddr, nil
}

// enableForwarding sets net.ipv4.ip_forward in the netns the plugin runs in: the node's.
func enableForwarding() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(p)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enabling net.ipv4.ip_forward: %w", err)
	}
	return nil
}

// Del is CNI DEL: deregister, delete the veth, release the address. Missing pieces are fine.
func Del(args *skel.CmdArgs) error {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return confErr(err)
	}
	var errs []string
	// Deregister first, so the agent detaches the datapath from a veth that still exists.
	agentErr := NewAgent(conf.AgentSocket).Deregister(context.Background(), args.ContainerID)
	if agentErr != nil && IsUnreachable(agentErr) {
		// Not running: it reconciles its endpoints with the veths when it starts.
		agentErr = nil
	}
	hostName := HostVethName(args.ContainerID, args.IfName)
	if l, err := netlink.LinkByName(hostName); err == nil {
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Sprintf("deleting veth %s: %v", hostName, err))
		}
	} else if !isNotFound(err) {
		errs = append(errs, fmt.Sprintf("veth %s: %v", hostName, err))
	}
	ipam, err := OpenIPAM(conf.IPAMDataDir, conf.Name, conf.SubnetPrefix)
	if err == nil {
		_, err = ipam.Release(args.ContainerID, args.IfName)
	}
	if err != nil {
		errs = append(errs, err.Error())
	}
	if agentErr != nil {
		errs = append(errs, "deregistering the endpoint: "+agentErr.Error())
	}
	if len(errs) > 0 {
		return cniErr(types.ErrInternal, "%s", strings.Join(errs, "; "))
	}
	return nil
}

// Check is CNI CHECK: both veth ends, the address, the routes, IPAM and the registration.
func Check(args *skel.CmdArgs) error {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return confErr(err)
	}
	if err := version.ParsePrevResult(&conf.NetConf); err != nil {
		return cniErr(types.ErrDecodingFailure, "prevResult: %v", err)
	}
	ipam, err := OpenIPAM(conf.IPAMDataDir, conf.Name, conf.SubnetPrefix)
	if err != nil {
		return cniErr(types.ErrInternal, "%v", err)
	}
	ip, ok, err := ipam.Lookup(args.ContainerID, args.IfName)
	if err != nil {
		return cniErr(types.ErrInternal, "%v", err)
	}
	if !ok {
		return cniErr(types.ErrInternal, "no address allocated to %s/%s in %s", args.ContainerID, args.IfName, ipam.Dir())
	}
	if conf.PrevResult != nil {
		prev, err := current.NewResultFromResult(conf.PrevResult)
		if err != nil {
			return cniErr(types.ErrDecodingFailure, "prevResult: %v", err)
		}
		found := false
		for _, c := range prev.IPs {
			if a, ok := netip.AddrFromSlice(c.Address.IP); ok && a.Unmap() == ip {
				found = true
			}
		}
		if !found {
			return cniErr(types.ErrInternal, "prevResult does not have the allocated address %s", ip)
		}
	}
	if err := checkLinks(args, ip); err != nil {
		return cniErr(types.ErrInternal, "%v", err)
	}
	ok, err = NewAgent(conf.AgentSocket).Registered(context.Background(), args.ContainerID)
	if err != nil {
		return cniErr(types.ErrInternal, "%v", err)
	}
	if !ok {
		return cniErr(types.ErrInternal, "the agent has no endpoint for container %s", args.ContainerID)
	}
	return nil
}

func checkLinks(args *skel.CmdArgs, ip netip.Addr) error {
	hostName := HostVethName(args.ContainerID, args.IfName)
	hostLink, err := netlink.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("host veth %s: %w", hostName, err)
	}
	if _, ok := hostLink.(*netlink.Veth); !ok {
		return fmt.Errorf("%s is a %s, not a veth", hostName, hostLink.Type())
	}
	if hostLink.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("host veth %s is down", hostName)
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: ipNet(netip.PrefixFrom(ip, 32))}, netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("host routes: %w", err)
	}
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.LinkIndex == hostLink.Attrs().Index }) {
		return fmt.Errorf("no route %s/32 dev %s on the node", ip, hostName)
	}
	if args.Netns == "" {
		return errors.New("CNI_NETNS is required for CHECK")
	}
	podNS, err := netns.GetFromPath(args.Netns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", args.Netns, err)
	}
	defer podNS.Close()
	h, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(args.IfName)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", args.IfName, args.Netns, err)
	}
	if _, ok := l.(*netlink.Veth); !ok {
		return fmt.Errorf("%s in %s is a %s, not a veth", args.IfName, args.Netns, l.Type())
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("%s in %s is down", args.IfName, args.Netns)
	}
	if l.Attrs().ParentIndex != hostLink.Attrs().Index || hostLink.Attrs().ParentIndex != l.Attrs().Index {
		return fmt.Errorf("%s in %s is not the peer of %s", args.IfName, args.Netns, hostName)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool {
		ones, _ := a.Mask.Size()
		return a.IP.Equal(net.IP(ip.AsSlice())) && ones == 32
	}) {
		return fmt.Errorf("%s in %s does not have %s/32", args.IfName, args.Netns, ip)
	}
	podRoutes, err := h.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	gw := net.IP(Gateway.AsSlice())
	if !slices.ContainsFunc(podRoutes, func(r netlink.Route) bool {
		return r.Dst != nil && r.Dst.IP.Equal(gw) && r.Scope == netlink.SCOPE_LINK
	}) {
		return fmt.Errorf("no route %s dev %s scope link in %s", Gateway, args.IfName, args.Netns)
	}
	if !slices.ContainsFunc(podRoutes, func(r netlink.Route) bool {
		isDefault := r.Dst == nil || (r.Dst.IP.IsUnspecified() && func() bool { o, _ := r.Dst.Mask.Size(); return o == 0 }())
		return isDefault && r.Gw.Equal(gw)
	}) {
		return fmt.Errorf("no default route via %s in %s", Gateway, args.Netns)
	}
	return nil
}

// Status is CNI STATUS: ready when the agent answers /healthz.
func Status(args *skel.CmdArgs) error {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return confErr(err)
	}
	if err := NewAgent(conf.AgentSocket).Healthy(context.Background()); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "agent not ready", err.Error())
	}
	return nil
}

// GC is CNI GC: release the addresses of attachments the runtime no longer has.
func GC(args *skel.CmdArgs) error {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return confErr(err)
	}
	valid := map[[2]string]bool{}
	for _, a := range conf.ValidAttachments {
		valid[[2]string{a.ContainerID, a.IfName}] = true
	}
	ipam, err := OpenIPAM(conf.IPAMDataDir, conf.Name, conf.SubnetPrefix)
	if err != nil {
		return cniErr(types.ErrInternal, "%v", err)
	}
	if _, err := ipam.GC(func(id, ifName string) bool { return valid[[2]string{id, ifName}] }); err != nil {
		return cniErr(types.ErrInternal, "%v", err)
	}
	return nil
}
