package identity

import (
	"net/netip"
	"testing"
)

func TestIPCacheLongestPrefix(t *testing.T) {
	c := NewIPCache()
	wide := &Identity{ID: LocalScope}
	narrow := &Identity{ID: LocalScope + 1}
	host := &Identity{ID: Host}
	c.Upsert(netip.MustParsePrefix("10.0.0.0/8"), wide)
	c.Upsert(netip.MustParsePrefix("10.1.0.0/16"), narrow)
	c.Upsert(netip.MustParsePrefix("10.1.2.3/32"), host)
	cases := map[string]*Identity{"10.9.9.9": wide, "10.1.9.9": narrow, "10.1.2.3": host, "11.0.0.1": nil}
	for addr, want := range cases {
		got, _, ok := c.Lookup(netip.MustParseAddr(addr))
		if (want == nil) == ok || got != want {
			t.Errorf("%s: got %v (%v), want %v", addr, got, ok, want)
		}
	}
	c.Delete(netip.MustParsePrefix("10.1.0.0/16"))
	if got, p, _ := c.Lookup(netip.MustParseAddr("10.1.9.9")); got != wide || p.String() != "10.0.0.0/8" {
		t.Errorf("after delete: %v %s", got, p)
	}
	var n int
	c.Entries(func(netip.Prefix, *Identity) { n++ })
	if n != 2 {
		t.Errorf("entries: %d", n)
	}
}

func TestReservedIdentities(t *testing.T) {
	if ReservedName(Host) != "host" || ReservedName(World) != "world" || ReservedName(RemoteNode) != "remote-node" || ReservedName(300) != "" {
		t.Error("reserved names")
	}
	if v, ok := ReservedLabels(Host).Get("reserved", "host"); !ok || v != "" {
		t.Error("host labels")
	}
	if World.String() != "2 (world)" || ID(300).String() != "300" {
		t.Errorf("strings: %s %s", World, ID(300))
	}
	l := CIDRLabels(netip.MustParsePrefix("10.0.0.0/8"))
	if !l.Has("reserved", "world") || !l.Has("cidr", "10.0.0.0/8") {
		t.Errorf("CIDR labels %s", l)
	}
}
