package proxy

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netward/netward/l7"
)

// allowAll admits every request: the robustness cases must be refused by the parser, not
// by policy.
func allowAll() *Rules { return NewRules(RuleSet{Origin: "all"}) }

// expectRefused sends raw on a new connection and checks the proxy answers status, closes
// the connection, reports an error event, forwards nothing, and still serves others.
func expectRefused(t *testing.T, h *harness, raw string, status int) {
	t.Helper()
	before := len(h.eventList())
	c := h.dial()
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.c.Write([]byte(raw)) // the proxy may close before reading it all
	resp, _, err := c.tryRead("GET")
	if err != nil {
		t.Fatalf("%q: no response: %v", raw, err)
	}
	if resp.StatusCode != status || !resp.Close {
		t.Fatalf("%q: %d close=%v, want %d and close", raw, resp.StatusCode, resp.Close, status)
	}
	if !c.closed(3 * time.Second) {
		t.Fatalf("%q: the connection is still open", raw)
	}
	if got := h.backend.ln.received(); got != "" {
		t.Fatalf("%q: the backend received %q", raw, got)
	}
	ev := h.waitEvents(before + 1)[before]
	if ev.Verdict != VerdictError || ev.Status != status || ev.Reason == "" {
		t.Fatalf("%q: event %+v", raw, ev)
	}
	// Other connections are unaffected.
	o := h.dial()
	o.send(get("/ok"))
	if resp, _ := o.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("a normal request after %q: %d", raw, resp.StatusCode)
	}
	h.backend.ln.mu.Lock()
	h.backend.ln.bytes.Reset()
	h.backend.ln.mu.Unlock()
}

// TestSmugglingCLAndTE: Content-Length together with Transfer-Encoding is refused (RFC 9112
// §6.1 lets a server process it; a proxy that does and a destination that frames it
// differently is the classic desync).
func TestSmugglingCLAndTE(t *testing.T) {
	h := newHarness(t, allowAll(), nil)
	expectRefused(t, h, "POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: svc\r\n\r\n", 400)
	expectRefused(t, h, "POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400)
	// Transfer-Encoding variants: obfuscated, listed twice, not chunked, in HTTP/1.0.
	expectRefused(t, h, "POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)
	expectRefused(t, h, "POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501)
	expectRefused(t, h, "POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501)
	expectRefused(t, h, "POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400)
	expectRefused(t, h, "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)
}

// TestSmugglingTwoContentLengths: differing Content-Length values (two fields or a list)
// are refused; identical ones are one value (RFC 9110 §8.6).
func TestSmugglingTwoContentLengths(t *testing.T) {
	h := newHarness(t, allowAll(), nil)
	expectRefused(t, h, "POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc", 400)
	expectRefused(t, h, "POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 3, 30\r\n\r\nabc", 400)
	for _, v := range []string{"+3", "-3", "0x3", "3 3", "", "99999999999999999999"} {
		expectRefused(t, h, "POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: "+v+"\r\n\r\nabc", 400)
	}
	c := h.dial()
	c.send("POST /same HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
	if resp, body := c.read("POST"); resp.StatusCode != 200 || body != "echo POST /same abc" {
		t.Fatalf("identical Content-Length: %d %q", resp.StatusCode, body)
	}
}

// TestObsFold: a field continued on the next line (obs-fold) is refused (RFC 9112 §5.2
// allows a server to reject it with 400).
func TestObsFold(t *testing.T) {
	h := newHarness(t, allowAll(), nil)
	expectRefused(t, h, "GET /a HTTP/1.1\r\nHost: svc\r\nX-A: one\r\n two\r\n\r\n", 400)
	expectRefused(t, h, "GET /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding:\r\n\tchunked\r\n\r\n", 400)
	expectRefused(t, h, "GET /a HTTP/1.1\r\n Host: svc\r\n\r\n", 400)
}

// TestInvalidMethod: a method that is not a token is refused.
func TestInvalidMethod(t *testing.T) {
	h := newHarness(t, allowAll(), nil)
	for _, m := range []string{"G(T", "GE T", "GET\x00", "G\"T", "\x16\x03"} {
		expectRefused(t, h, m+" /a HTTP/1.1\r\nHost: svc\r\n\r\n", 400)
	}
	// Other malformed heads.
	for raw, status := range map[string]int{
		"GET /a HTTP/1.1\nHost: svc\n\n":                      400, // bare LF
		"GET /a HTTP/1.1\r\nHost: svc\r\nX: a\rb\r\n\r\n":     400, // bare CR
		"GET /a HTTP/1.1\r\n\r\n":                             400, // no Host
		"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n":       400, // two Hosts
		"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n":                400, // invalid Host
		"GET /a HTTP/1.1\r\nHost: svc\r\nX-A : b\r\n\r\n":     400, // space before colon
		"GET /a HTTP/1.1\r\nHost: svc\r\nX-A: b\x01c\r\n\r\n": 400, // control character
		"GET /a HTTP/1.1\r\nHost: svc\r\n: b\r\n\r\n":         400, // empty field name
		"GET /a HTTP/1.1\r\nHost: svc\r\nno colon\r\n\r\n":    400,
		"GET /a\x7fb HTTP/1.1\r\nHost: svc\r\n\r\n":           400, // DEL in the target
		"GET /a HTTP/1.1 \r\nHost: svc\r\n\r\n":               400,
		"GET  /a HTTP/1.1\r\nHost: svc\r\n\r\n":               400,
		"GET a HTTP/1.1\r\nHost: svc\r\n\r\n":                 400, // no form
		"GET * HTTP/1.1\r\nHost: svc\r\n\r\n":                 400, // * outside OPTIONS
		"GET http://u@svc/ HTTP/1.1\r\nHost: svc\r\n\r\n":     400, // userinfo
		"GET /a HTTP/1.2\r\nHost: svc\r\n\r\n":                505,
		"GET /a HTTP/2.0\r\nHost: svc\r\n\r\n":                505,
		"GET /a\r\n\r\n":                                      400, // HTTP/0.9
	} {
		expectRefused(t, h, raw, status)
	}
}

// TestOversizedHeaders: a head above MaxHeaderBytes, or with too many fields, gets 431 and
// the connection is closed; the proxy never holds more than the limit.
func TestOversizedHeaders(t *testing.T) {
	h := newHarness(t, allowAll(), func(c *Config) { c.MaxHeaderBytes = 8 << 10; c.MaxHeaderCount = 20 })
	expectRefused(t, h, "GET /a HTTP/1.1\r\nHost: svc\r\nX-Big: "+strings.Repeat("a", 9<<10)+"\r\n\r\n", 431)
	expectRefused(t, h, "GET /"+strings.Repeat("a", 9<<10)+" HTTP/1.1\r\nHost: svc\r\n\r\n", 431)
	var many strings.Builder
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&many, "X-%d: v\r\n", i)
	}
	expectRefused(t, h, "GET /a HTTP/1.1\r\nHost: svc\r\n"+many.String()+"\r\n", 431)
	// A trailer section beyond the limit ends the exchange too.
	c := h.dial()
	c.send("POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
	for i := 0; i < 200; i++ {
		if _, err := fmt.Fprintf(c.c, "X-T%d: %s\r\n", i, strings.Repeat("b", 100)); err != nil {
			break
		}
	}
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c.c); isTimeout(err) {
		t.Fatalf("an endless trailer section did not close the connection: %v", err)
	}
}

// TestSlowloris: a client trickling its head is cut at ReadHeaderTimeout, one that says
// nothing too, one that stalls its body at IOTimeout, one that stays idle at IdleTimeout;
// a normal client on another connection is served all along.
func TestSlowloris(t *testing.T) {
	h := newHarness(t, allowAll(), func(c *Config) {
		c.ReadHeaderTimeout = 300 * time.Millisecond
		c.IOTimeout = 300 * time.Millisecond
		c.IdleTimeout = 500 * time.Millisecond
	})
	stop := make(chan struct{})
	var served, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			failed.Add(1)
			return
		}
		defer c.Close()
		cl := &client{t: t, c: c, br: newReader(c)}
		for {
			select {
			case <-stop:
				return
			default:
			}
			io.WriteString(c, get("/normal"))
			resp, _, err := cl.tryRead("GET")
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
				return
			}
			served.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	}()

	slow := func(name, prefix string, trickle string, want time.Duration) {
		t.Helper()
		c := h.dial()
		start := time.Now()
		c.send(prefix)
		closed := make(chan struct{})
		go func() {
			for i := 0; i < len(trickle); i++ {
				select {
				case <-closed:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := c.c.Write([]byte{trickle[i]}); err != nil {
					return
				}
			}
		}()
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c.c)
		close(closed)
		if d := time.Since(start); d < want-50*time.Millisecond || d > want+time.Second {
			t.Errorf("%s: closed after %v, want about %v", name, d, want)
		}
	}
	slow("trickled head", "G", "ET /slow HTTP/1.1\r\nHost: svc\r\nX-Slow: "+strings.Repeat("a", 100), 300*time.Millisecond)
	slow("silent client", "", "", 300*time.Millisecond)
	slow("stalled body", "POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\nab", "", 300*time.Millisecond)
	slow("idle keep-alive", get("/idle"), "", 500*time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || served.Load() < 20 {
		t.Fatalf("the normal client: %d served, %d failures", served.Load(), failed.Load())
	}
	if s := h.p.Stats(); s.HeaderTimeouts < 2 {
		t.Fatalf("stats %+v", s)
	}
}

// TestNonHTTPBytes: a TLS ClientHello or random bytes on the HTTP port get 400 and close.
func TestNonHTTPBytes(t *testing.T) {
	h := newHarness(t, allowAll(), nil)
	hello := "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + strings.Repeat("\x00", 32) + "\x00\x00\x02\x13\x01\x01\x00\r\n"
	expectRefused(t, h, hello, 400)
	junk := make([]byte, 2000)
	rand.Read(junk)
	junk = append(junk, "\r\n\r\n"...)
	expectRefused(t, h, string(junk), 400)
	expectRefused(t, h, "SSH-2.0-OpenSSH_9.6\r\n\r\n", 400)
	// Bytes without any line end: bounded by MaxHeaderBytes.
	expectRefused(t, h, strings.Repeat("x", 70<<10), 431)
	// An HTTP/2 preface that is not followed by the rest of it.
	expectRefused(t, h, "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", 400)
}

// TestInvalidChunkedBody: a malformed chunk aborts the exchange and the connection; the
// destination never gets a well-formed message.
func TestInvalidChunkedBody(t *testing.T) {
	h := newHarness(t, allowAll(), nil)
	for _, body := range []string{"zz\r\n", "5\r\nhelloXX", "1\nA\n0\n\n", "fffffffffffffffff\r\n", "3 \r\nabc\r\n0\r\n\r\n"} {
		c := h.dial()
		c.send("POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
		resp, _, err := c.tryRead("POST")
		if err != nil || resp.StatusCode != 400 {
			t.Fatalf("%q: %v %v, want 400", body, resp, err)
		}
		if !c.closed(3 * time.Second) {
			t.Fatalf("%q: connection open", body)
		}
	}
	if n := h.backend.count(); n != 0 {
		t.Fatalf("the backend handled %d requests", n)
	}
}

// TestMaxConns: connections beyond MaxConns get 503 and are closed without a goroutine;
// once one closes, new connections are served.
func TestMaxConns(t *testing.T) {
	h := newHarness(t, allowAll(), func(c *Config) { c.MaxConns = 3 })
	var cs []*client
	for i := 0; i < 3; i++ {
		c := h.dial()
		c.send(get("/hold"))
		c.read("GET")
		cs = append(cs, c)
	}
	extra := h.dial()
	resp, body, err := extra.tryRead("GET")
	if err != nil || resp.StatusCode != 503 || !resp.Close || body != "Too many connections" {
		t.Fatalf("over the limit: %v %v %q", resp, err, body)
	}
	if !extra.closed(time.Second) {
		t.Fatal("refused connection still open")
	}
	cs[0].c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for h.p.Stats().Open > 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c := h.dial()
	c.send(get("/after"))
	if resp, _ := c.read("GET"); resp.StatusCode != 200 {
		t.Fatal("after a connection closed")
	}
	if s := h.p.Stats(); s.Refused != 1 || s.Open != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// TestCloseEndsEverything: Close ends idle, busy and tunnelled connections and Serve.
func TestCloseEndsEverything(t *testing.T) {
	h := newHarness(t, NewRules(RuleSet{Origin: "all", HTTP: []*l7.HTTPRule{rule(t, "", "", "", nil)}}), nil)
	idle := h.dial()
	idle.send(get("/x"))
	idle.read("GET")
	tun := h.dial()
	tun.send("GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	if resp, _ := tun.read("GET"); resp.StatusCode != 101 {
		t.Fatal("upgrade")
	}
	half := h.dial()
	half.send("GET /x HTTP/1.1\r\nHo")
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { h.p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
	for _, c := range []*client{idle, tun, half} {
		if !c.closed(time.Second) {
			t.Fatal("a connection survived Close")
		}
	}
	if h.p.Stats().Open != 0 {
		t.Fatalf("stats %+v", h.p.Stats())
	}
}
