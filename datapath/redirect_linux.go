//go:build linux

package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Marks (skb->mark; bpf/netward.h, docs/l7-proxy.md "Mark layout").
const (
	// MarkMagicToProxy: port<<16 | MarkMagicToProxy | dir, set by the programs on packets a
	// redirect entry sends to the L7 proxy.
	MarkMagicToProxy uint32 = 0x0A00
	// MarkMagicFromProxy | dir is the SO_MARK of the proxy's upstream sockets: dir 0 says
	// the destination's ingress policy was judged by the proxy (to_pod lets the packets
	// pass), dir 1 that only the source's egress policy was (to_pod enforces the
	// destination's ingress policy).
	MarkMagicFromProxy uint32 = 0x0B00
	// MarkMagicMask selects the magic byte.
	MarkMagicMask uint32 = 0xFF00
)

// FromProxyMark is the SO_MARK of a proxy upstream socket: ingressJudged says that the
// destination endpoint's ingress policy has judged the connection's requests.
func FromProxyMark(ingressJudged bool) uint32 {
	if ingressJudged {
		return MarkMagicFromProxy | dirIngress
	}
	return MarkMagicFromProxy | dirEgress
}

// ToProxyMark is the mark the programs set on a packet redirected to port.
func ToProxyMark(port uint16, egress bool) uint32 {
	m := uint32(port)<<16 | MarkMagicToProxy
	if egress {
		m |= dirEgress
	}
	return m
}

// ProxyRedirect is one TPROXY rule: packets marked for proxy port Port (both directions)
// go to the transparent socket listening on 127.0.0.1:Listener, for TCP or UDP.
type ProxyRedirect struct {
	Port     uint16
	Listener uint16
	UDP      bool
}

// RedirectConfig is the node's L7 redirect plumbing (InstallRedirect).
type RedirectConfig struct {
	// NetnsPath is the node's network namespace ("" for the caller's).
	NetnsPath string
	// Table is the routing table of the "local 0.0.0.0/0 dev lo" route, Priority the
	// priority of the "fwmark 0x0A00/0xFF00 lookup Table" rule.
	Table, Priority int
	Rules           []ProxyRedirect
}

// RedirectTable is the nftables table (family ip) InstallRedirect owns in the node's
// namespace.
const RedirectTable = "netward_proxy"

// InstallRedirect programs the node's network namespace so that marked packets reach the
// proxy's transparent sockets:
//
//	nft table ip netward_proxy, chain prerouting (filter hook, priority mangle):
//	  meta l4proto tcp socket transparent 1 meta mark set 0x0A00 accept
//	  meta l4proto udp socket transparent 1 meta mark set 0x0A00 accept
//	      (packets of connections the proxy already holds, client side and the replies to
//	      its transparent upstream sockets, TCP and the DNS proxy's UDP: routed to the
//	      local stack. The listeners are
//	      bound to 127.0.0.1, so a lookup for another destination never finds them, which
//	      is what Cilium's --nowildcard is for.)
//	  meta mark & 0xffffff00 == port<<16|0x0A00 meta l4proto tcp|udp tproxy to 127.0.0.1:listener
//	      (one per rule: new connections to the listener of their proxy port, which listens
//	      on the loopback address only, so that nothing reaches it but redirects)
//	ip rule fwmark 0x0A00/0xFF00 lookup <Table> (priority <Priority>)
//	ip route local 0.0.0.0/0 dev lo table <Table>
//
// The table is replaced in one nftables transaction, so a restarting agent swaps its rules
// in without a moment where marked packets are not taken; the rule and the route are added
// when missing. It touches nothing outside the namespace (each node of a test machine has
// its own). The rules stay when the agent exits: marked packets then meet no listener and
// are refused, rather than reaching their destination unjudged.
func InstallRedirect(cfg RedirectConfig) error {
	if cfg.Table <= 0 || cfg.Table >= unix.RT_TABLE_COMPAT && cfg.Table <= unix.RT_TABLE_LOCAL {
		return fmt.Errorf("redirect: routing table %d is reserved or invalid", cfg.Table)
	}
	for _, r := range cfg.Rules {
		if r.Port == 0 || r.Listener == 0 {
			return fmt.Errorf("redirect: rule %+v: ports must not be 0", r)
		}
	}
	return InNetns(cfg.NetnsPath, func() error {
		if err := installNFT(cfg.Rules); err != nil {
			return err
		}
		return installRouting(cfg.Table, cfg.Priority)
	})
}

// RemoveRedirect removes what InstallRedirect installed (tests; an uninstall).
func RemoveRedirect(cfg RedirectConfig) error {
	return InNetns(cfg.NetnsPath, func() error {
		var errs []error
		c, err := nftables.New()
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: RedirectTable}
		c.AddTable(t) // so that the delete cannot fail on a missing table
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("remove nftables table %s: %w", RedirectTable, err))
		}
		rules, err := netlink.RuleList(netlink.FAMILY_V4)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("ip rules: %w", err))...)
		}
		for _, r := range rules {
			if isRedirectRule(r) && r.Table == cfg.Table {
				if err := netlink.RuleDel(&r); err != nil {
					errs = append(errs, fmt.Errorf("delete ip rule: %w", err))
				}
			}
		}
		if err := netlink.RouteDel(localRoute(cfg.Table)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route in table %d: %w", cfg.Table, err))
		}
		return errors.Join(errs...)
	})
}

// InNetns runs fn on an OS thread switched to the network namespace at path ("" runs fn
// in the caller's namespace). Sockets created by fn belong to that namespace for good.
func InNetns(path string, fn func() error) error { return inNetns(path, fn) }

func native32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func installNFT(rules []ProxyRedirect) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: RedirectTable}
	// Add, delete and add again in one transaction: replaces an existing table atomically
	// and creates a missing one.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept,
	})
	l4 := func(proto byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		}
	}
	for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
		socketRule := append(l4(proto),
			&expr.Socket{Key: expr.SocketKeyTransparent, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}},
			&expr.Immediate{Register: 1, Data: native32(MarkMagicToProxy)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictAccept},
		)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: socketRule})
	}
	for _, r := range rules {
		proto := byte(unix.IPPROTO_TCP)
		if r.UDP {
			proto = unix.IPPROTO_UDP
		}
		ex := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(0xFFFFFF00), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(ToProxyMark(r.Port, false))},
		}
		ex = append(ex, l4(proto)...)
		ex = append(ex,
			&expr.Immediate{Register: 1, Data: []byte{127, 0, 0, 1}},
			&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, r.Listener)},
			&expr.TProxy{Family: byte(nftables.TableFamilyIPv4), TableFamily: byte(nftables.TableFamilyIPv4), RegAddr: 1, RegPort: 2},
			&expr.Counter{},
		)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", RedirectTable, err)
	}
	return nil
}

func isRedirectRule(r netlink.Rule) bool {
	return r.Mark == MarkMagicToProxy && r.Mask != nil && *r.Mask == MarkMagicMask
}

func localRoute(table int) *netlink.Route {
	_, all, _ := net.ParseCIDR("0.0.0.0/0")
	lo := 1 // the loopback device is ifindex 1 in every namespace
	if l, err := netlink.LinkByName("lo"); err == nil {
		lo = l.Attrs().Index
	}
	return &netlink.Route{Dst: all, Type: unix.RTN_LOCAL, Table: table, LinkIndex: lo, Scope: netlink.SCOPE_HOST}
}

func installRouting(table, priority int) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("loopback up: %w", err)
		}
	}
	if err := netlink.RouteReplace(localRoute(table)); err != nil {
		return fmt.Errorf("route local 0.0.0.0/0 dev lo table %d: %w", table, err)
	}
	rules, err := netlink.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("ip rules: %w", err)
	}
	have := false
	for _, r := range rules {
		if !isRedirectRule(r) {
			continue
		}
		if r.Table == table && r.Priority == priority && !have {
			have = true
			continue
		}
		// A rule of an earlier configuration (or a duplicate): the current one replaces it.
		defer func(r netlink.Rule) { netlink.RuleDel(&r) }(r)
	}
	if have {
		return nil
	}
	r := netlink.NewRule()
	r.Family = unix.AF_INET
	r.Mark = MarkMagicToProxy
	mask := MarkMagicMask
	r.Mask = &mask
	r.Table = table
	r.Priority = priority
	if err := netlink.RuleAdd(r); err != nil {
		return fmt.Errorf("ip rule fwmark %#x/%#x lookup %d: %w", MarkMagicToProxy, MarkMagicMask, table, err)
	}
	return nil
}

// RedirectRules lists the TPROXY rules of the node's table (for status and tests): the
// proxy ports and listeners InstallRedirect installed.
func RedirectRules(netnsPath string) ([]ProxyRedirect, error) {
	var out []ProxyRedirect
	err := InNetns(netnsPath, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: RedirectTable}
		rules, err := c.GetRules(t, &nftables.Chain{Name: "prerouting", Table: t})
		if err != nil {
			return fmt.Errorf("nftables table %s: %w", RedirectTable, err)
		}
		for _, r := range rules {
			var pr ProxyRedirect
			for i, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Cmp:
					if len(e.Data) == 4 && i > 0 {
						if m := binary.NativeEndian.Uint32(e.Data); m&MarkMagicMask == MarkMagicToProxy {
							pr.Port = uint16(m >> 16)
						}
					}
					if len(e.Data) == 1 && e.Data[0] == unix.IPPROTO_UDP {
						pr.UDP = true
					}
				case *expr.Immediate:
					if len(e.Data) == 2 {
						pr.Listener = binary.BigEndian.Uint16(e.Data)
					}
				}
			}
			if pr.Port != 0 {
				out = append(out, pr)
			}
		}
		return nil
	})
	slices.SortFunc(out, func(a, b ProxyRedirect) int {
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		if a.UDP == b.UDP {
			return 0
		}
		if a.UDP {
			return 1
		}
		return -1
	})
	return out, err
}
