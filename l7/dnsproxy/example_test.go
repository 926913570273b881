package dnsproxy_test

import (
	"context"
	"fmt"
	"net"
	"strings"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/netward/netward/l7/dnsproxy"
)

// A proxy that allows names under example.com and refuses the others. Without TPROXY, the
// client asks the listener itself; in the agent, the listener is ListenTransparentUDP's,
// DialUpstream binds to the client's address and ReplyUDP is TransparentReplier's.
func Example() {
	events := make(chan dnsproxy.Event, 1)
	p, err := dnsproxy.New(dnsproxy.Config{
		Decider: dnsproxy.DeciderFunc(func(ctx context.Context, f dnsproxy.Flow) dnsproxy.Decision {
			if strings.HasSuffix(f.Name, ".example.com.") {
				return dnsproxy.Decision{Allowed: true, Origins: []string{"allow-example"}}
			}
			return dnsproxy.Decision{Origins: []string{"allow-example"}, Reason: "no rule matches the name"}
		}),
		Events: func(e dnsproxy.Event) { events <- e },
	})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	go p.ServeUDP(pc)

	c, err := net.DialUDP("udp4", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 42, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("Tracker.Ads.Example.NET."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, _ := b.Finish()
	c.Write(q)

	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	var m dnsmessage.Message
	m.Unpack(buf[:n])
	fmt.Println("answer:", m.ID, m.RCode, m.Questions[0].Name)
	e := <-events
	fmt.Println("event:", e.Name, e.Verdict, e.Rcode, e.Reason)
	// Output:
	// answer: 42 RCodeRefused Tracker.Ads.Example.NET.
	// event: tracker.ads.example.net. denied 5 no rule matches the name
}
