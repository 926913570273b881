//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Attach attaches the programs to the host-side veth ifname in the network namespace at
// netnsPath ("" for the caller's): from_pod on its tcx ingress (the pod's egress policy),
// to_pod on its tcx egress (the pod's ingress policy). The tcx links are pinned under
// <pinDir>/links/<ifname>/, so enforcement continues after the agent exits; a later Attach
// of the same interface adopts them and swaps in this build's programs atomically (no
// enforcement gap). When the kernel has no tcx (< 6.6), it falls back to clsact bpf
// filters, which also outlive the process.
//
// Call SetPolicy and SetEndpoint for the interface's ifindex before Attach: the programs
// drop everything of an interface without endpoint. detach removes the programs and the
// pins. One pin directory serves one node network namespace (pins are keyed by ifname).
func (d *Datapath) Attach(netnsPath, ifname string) (detach func() error, err error) {
	if ifname == "" || strings.ContainsAny(ifname, "/\x00") || ifname == "." || ifname == ".." {
		return nil, fmt.Errorf("invalid interface name %q", ifname)
	}
	dir := filepath.Join(d.pinDir, "links", ifname)
	err = inNetns(netnsPath, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("interface %s: %w", ifname, err)
		}
		ifindex := l.Attrs().Index
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var links []link.Link
		for _, a := range []struct {
			prog *ebpf.Program
			typ  ebpf.AttachType
			name string
		}{
			{d.objs.FromPod, ebpf.AttachTCXIngress, "from_pod"},
			{d.objs.ToPod, ebpf.AttachTCXEgress, "to_pod"},
		} {
			lk, err := attachTCX(a.prog, a.typ, ifindex, filepath.Join(dir, a.name))
			if err != nil {
				for _, l := range links {
					l.Unpin()
					l.Close()
				}
				if errors.Is(err, ebpf.ErrNotSupported) {
					return errTCXUnsupported
				}
				return fmt.Errorf("attach %s to %s: %w", a.name, ifname, err)
			}
			links = append(links, lk)
		}
		d.mu.Lock()
		for _, old := range d.links[ifname] {
			old.Close() // an earlier Attach of this interface by this Datapath
		}
		d.links[ifname] = links
		d.mu.Unlock()
		detach = func() error {
			var errs []error
			for _, l := range links {
				errs = append(errs, l.Unpin(), l.Close())
			}
			os.Remove(dir)
			d.mu.Lock()
			if cur := d.links[ifname]; len(cur) > 0 && cur[0] == links[0] {
				delete(d.links, ifname)
			}
			d.mu.Unlock()
			return errors.Join(errs...)
		}
		return nil
	})
	if errors.Is(err, errTCXUnsupported) {
		os.Remove(dir)
		return d.attachClsact(netnsPath, ifname)
	}
	if err != nil {
		return nil, err
	}
	return detach, nil
}

var errTCXUnsupported = errors.New("tcx not supported")

// attachTCX adopts the link pinned at pin when it is a tcx link of this interface and
// direction (updating its program), and otherwise attaches and pins a new one.
func attachTCX(prog *ebpf.Program, typ ebpf.AttachType, ifindex int, pin string) (link.Link, error) {
	if old, err := link.LoadPinnedLink(pin, nil); err == nil {
		info, ierr := old.Info()
		if ierr == nil && info.TCX() != nil && int(info.TCX().Ifindex) == ifindex &&
			ebpf.AttachType(info.TCX().AttachType) == typ {
			if err := old.Update(prog); err == nil {
				return old, nil
			}
		}
		// A link of an interface that is gone (or another one of the same name): replace it.
		old.Unpin()
		old.Close()
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: typ})
	if err != nil {
		return nil, err
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return nil, fmt.Errorf("pin link: %w", err)
	}
	return l, nil
}

// attachClsact is the fallback for kernels without tcx: a clsact qdisc with direct-action
// bpf filters (they hold the programs until removed).
func (d *Datapath) attachClsact(netnsPath, ifname string) (func() error, error) {
	filters := func(ifindex int) []*netlink.BpfFilter {
		mk := func(parent uint32, prog *ebpf.Program, name string) *netlink.BpfFilter {
			return &netlink.BpfFilter{
				FilterAttrs: netlink.FilterAttrs{
					LinkIndex: ifindex, Parent: parent, Handle: netlink.MakeHandle(0, 1),
					Priority: 1, Protocol: 0x0003, // ETH_P_ALL
				},
				Fd: prog.FD(), Name: "netward_" + name, DirectAction: true,
			}
		}
		return []*netlink.BpfFilter{
			mk(netlink.HANDLE_MIN_INGRESS, d.objs.FromPod, "from_pod"),
			mk(netlink.HANDLE_MIN_EGRESS, d.objs.ToPod, "to_pod"),
		}
	}
	var ifindex int
	err := inNetns(netnsPath, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("interface %s: %w", ifname, err)
		}
		ifindex = l.Attrs().Index
		qdisc := &netlink.GenericQdisc{
			QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
			QdiscType:  "clsact",
		}
		if err := netlink.QdiscReplace(qdisc); err != nil {
			return fmt.Errorf("clsact on %s: %w", ifname, err)
		}
		for _, f := range filters(ifindex) {
			if err := netlink.FilterReplace(f); err != nil {
				return fmt.Errorf("bpf filter on %s: %w", ifname, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func() error {
		return inNetns(netnsPath, func() error {
			var errs []error
			for _, f := range filters(ifindex) {
				errs = append(errs, netlink.FilterDel(f))
			}
			return errors.Join(errs...)
		})
	}, nil
}

// inNetns runs fn on a new, locked OS thread switched to the network namespace at path
// ("" runs fn in the caller's namespace). If the thread cannot switch back it stays locked
// and dies with its goroutine. The mount namespace stays the caller's, so bpffs pins keep
// working (unlike under `ip netns exec`).
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
