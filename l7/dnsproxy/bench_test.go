package dnsproxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/netward/netward/l7"
)

// benchUpstream is a minimal DNS server for the benchmark: it answers every query at once
// (buildAnswer) over UDP and TCP and records nothing, so that it costs little next to the
// proxy.
func benchUpstream(b *testing.B) (udp, tcp netip.AddrPort) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pc.Close(); ln.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(buildAnswer(buf[:n]), from)
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					q, err := benchReadFrame(c)
					if err != nil {
						return
					}
					if _, err := c.Write(frameOf(buildAnswer(q))); err != nil {
						return
					}
				}
			}()
		}
	}()
	return addrPort(pc.LocalAddr()), addrPort(ln.Addr())
}

func benchReadFrame(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	m := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(r, m)
	return m, err
}

// patternDecider admits names matching one pattern, as a DNS rule does.
type patternDecider struct{ p l7.DNSPattern }

func (d patternDecider) Decide(_ context.Context, f Flow) Decision {
	return Decision{Allowed: d.p.Matches(f.Name), Origins: []string{"bench"}}
}

// BenchmarkDNS measures lookups per second and p50/p99 latency directly to a DNS server and
// through the proxy (judging each name against a matchPattern), over UDP (a socket per
// client) and TCP (a connection per client, lookups in sequence), with 1 and 50 concurrent
// clients, all in one process on loopback (no TPROXY: the proxy's listener is what the
// clients ask). scripts/bench-dnsproxy.sh turns the output into a table.
func BenchmarkDNS(b *testing.B) {
	upUDP, upTCP := benchUpstream(b)
	pat, err := l7.CompileDNSRule("", "*.example.com")
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(Config{
		Decider: patternDecider{pat},
		DialUpstream: func(ctx context.Context, network string, src, dst netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			if network == "udp" {
				return d.DialContext(ctx, "udp4", upUDP.String())
			}
			return d.DialContext(ctx, "tcp4", upTCP.String())
		},
		MaxInFlight: 1 << 16,
	})
	if err != nil {
		b.Fatal(err)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go p.ServeUDP(pc)
	go p.ServeTCP(ln)
	b.Cleanup(func() { p.Close() })
	proxyUDP, proxyTCP := addrPort(pc.LocalAddr()), addrPort(ln.Addr())

	for _, transport := range []string{"udp", "tcp"} {
		for _, clients := range []int{1, 50} {
			for _, path := range []string{"direct", "proxy"} {
				addr := map[string]netip.AddrPort{"udp/direct": upUDP, "udp/proxy": proxyUDP, "tcp/direct": upTCP, "tcp/proxy": proxyTCP}[transport+"/"+path]
				b.Run(fmt.Sprintf("transport=%s/clients=%d/path=%s", transport, clients, path), func(b *testing.B) {
					runDNSLoad(b, transport, addr, clients, max(b.N, clients))
				})
			}
		}
	}
}

// runDNSLoad sends n lookups from clients concurrent clients and reports the rate and the
// latency percentiles.
func runDNSLoad(b *testing.B, transport string, addr netip.AddrPort, clients, n int) {
	q := func(id uint16) []byte {
		m, err := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true}), error(nil)
		m.StartQuestions()
		m.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("api.example.com."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		out, err := m.Finish()
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		count := n / clients
		if c < n%clients {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial(transport+"4", addr.String())
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			buf := make([]byte, 1500)
			for i := range count {
				id := uint16(c*1000 + i)
				msg := q(id)
				t0 := time.Now()
				conn.SetDeadline(t0.Add(5 * time.Second))
				var ans []byte
				if transport == "udp" {
					if _, err = conn.Write(msg); err == nil {
						var k int
						k, err = conn.Read(buf)
						ans = buf[:k]
					}
				} else if _, err = conn.Write(frameOf(msg)); err == nil {
					ans, err = benchReadFrame(conn)
				}
				if err != nil {
					errs <- fmt.Errorf("client %d lookup %d: %w", c, i, err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
				if len(ans) < 2 || binary.BigEndian.Uint16(ans) != id {
					errs <- fmt.Errorf("client %d: answer with another ID", c)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "lookups/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}
