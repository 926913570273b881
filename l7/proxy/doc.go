// Package proxy is netward's L7 proxy: a transparent HTTP/1.1 and h2c proxy that judges
// every request with the L7 rules of the policy map entry that redirected the connection,
// and forwards the allowed ones, unchanged, to the original destination.
//
// # Wiring
//
// The datapath redirects a connection whose map entry is a proxy redirect to a TPROXY
// listener (IP_TRANSPARENT): the accepted connection's LocalAddr is the original
// destination and its RemoteAddr the client. Serve takes that listener; Config.Egress
// says which endpoint's policy judges (Cilium has one proxy port per direction, so run one
// Proxy per direction). WithOriginalDestination gives any listener that shape, for tests.
// Config.Dial connects to the original destination; ConnFromContext gives it the client's
// address for a transparent (source-preserving) dial.
//
// The Decider is called for every request (HTTP/1 request or HTTP/2 stream) with the
// addresses, the direction, the destination port and the parsed request, so a policy
// change applies to the next request of an open connection. PolicyDecider implements it
// with the compiled policy.EndpointPolicy: its verdict is exactly EndpointPolicy.AllowsHTTP
// (after the L3/L4 entry still allows the peer); Rules implements it over fixed rule sets.
//
// # HTTP/1.1
//
// A client connection's requests are served one after the other, in order: pipelined
// requests wait in the socket and the read buffer, and responses go back in request order.
// Each allowed request is forwarded over the connection's own upstream connection (dialed
// at the first allowed request, kept alive, replaced when the destination closed it while
// idle; an idempotent request without body is sent again on a new connection when a
// reused one turns out closed before any byte of a response). The head is forwarded byte
// for byte as received; bodies stream in both directions (never buffered whole), with
// their framing validated and relayed unchanged (chunk extensions and trailers included).
// A response is relayed as received; its framing (Content-Length, chunked, until close;
// none for HEAD, 1xx, 204, 304) is followed so that the next response starts in the right
// place.
//
// A denied request gets "403 Forbidden" with the body "Access denied" and the connection
// stays usable: its body is read and dropped (up to Config.MaxDiscardBytes; beyond, and
// after Expect: 100-continue, the 403 says Connection: close). HEAD gets the 403 without
// body.
//
// Upgrade (e.g. WebSocket) and CONNECT are requests like the others: a denied one gets
// 403; an allowed one is forwarded and, if the destination switches protocols (101, or 2xx
// to CONNECT), bytes are then spliced both ways without further judgement, as Envoy does
// for WebSocket. A 101 the request did not ask for, or one switching to h2c, closes the
// connection: it would carry requests past the policy.
//
// # h2c
//
// HTTP/2 over cleartext starts with the connection preface (prior knowledge) or with an
// HTTP/1.1 request carrying "Upgrade: h2c", a valid HTTP2-Settings field and no body; the
// proxy answers 101 and that request becomes stream 1. The HTTP/2 server of
// golang.org/x/net/http2 serves the connection (MaxConcurrentStreams, header size and idle
// limits from the Config); every stream is judged on its own and, when allowed, forwarded
// over one HTTP/2 (prior knowledge) connection to the destination, trailers included
// (streams beyond the destination's limit wait for a slot; a stream it refuses unprocessed,
// REFUSED_STREAM or after GOAWAY, is sent again, as net/http does); a denied stream gets
// 403 "Access denied" and the other streams go on. An h2c upgrade the
// proxy does not take (with a body, or a malformed HTTP2-Settings) is declined: the
// request is forwarded as HTTP/1.1 without Upgrade, HTTP2-Settings and their Connection
// tokens. CONNECT over HTTP/2 is answered 501.
//
// # Header rewriting (headerMatches)
//
// An admitting rule's headerMatches with a mismatch action are carried out as Cilium's
// Envoy filter does (l7.HTTPRule.ApplyHeaderActions): ADD appends the value, DELETE removes
// a header with another value, REPLACE sets the value; LOG changes nothing. The ops of
// every admitting rule run in rule order, each on the headers as the previous left them;
// the rules themselves match the request as received, so the verdict stays AllowsHTTP's.
// All ops, LOG included, are reported in the request's event. The rewritten head keeps the
// request line and every other field line unchanged and appends the changed fields. Ops on
// fields that frame or route the message (Content-Length, Transfer-Encoding, Connection,
// Keep-Alive, Proxy-Connection, Upgrade, TE, Trailer, Host, HTTP2-Settings, Expect), and
// ops whose name or value is not a valid field, are reported but not applied: a policy
// must not be able to desynchronise the proxy and the destination.
//
// # What is refused
//
// The proxy and the destination must frame every message identically, so an ambiguous
// request is refused (the status below, Connection: close, an error event, the
// connection closed after a short drain so that the response is not lost to a reset):
//
//   - 400: Content-Length together with Transfer-Encoding (RFC 9112 §6.1 lets a server
//     prefer Transfer-Encoding; a proxy that does in front of a destination that does not
//     is the classic smuggling desync); Content-Length fields that differ, or that are not
//     1*DIGIT (a comma list, a sign, spaces, more than 18 digits); Transfer-Encoding twice,
//     or in HTTP/1.0;
//   - 501: a transfer coding other than exactly "chunked";
//   - 400: obs-fold (a field line starting with SP or HTAB, RFC 9112 §5.2); a bare LF or a
//     bare CR anywhere in the head (line ends must be CRLF); whitespace between a field
//     name and its colon; a field name that is not a token; a control character in a
//     value (HTAB excepted; obs-text is allowed);
//   - 400: a method that is not a token; a request target with a control character,
//     space, DEL or non-ASCII byte; a target form the method does not allow (asterisk
//     outside OPTIONS, authority outside CONNECT, userinfo in an absolute URI); a missing
//     Host in HTTP/1.1, two Host fields, or an invalid Host;
//   - 505: HTTP versions other than 1.0 and 1.1 (HTTP/0.9 is 400);
//   - 431: a head larger than MaxHeaderBytes (default 64 KiB) or with more than
//     MaxHeaderCount fields (default 100);
//   - 408: a head not complete within ReadHeaderTimeout (slowloris);
//   - 400: a malformed chunked body (size not 1–16 hex digits fitting 63 bits, bytes other
//     than CRLF after chunk data, a bare LF, control characters in extensions) or a
//     trailer section beyond MaxHeaderBytes;
//   - 400: bytes that are not HTTP: the first byte must be able to start a method (so a
//     TLS ClientHello is refused at once), and the request line is checked as soon as it
//     is complete, before the rest of the head.
//
// Empty lines before a request line are skipped (RFC 9112 §2.2), at most 64 bytes of them.
// Repeated identical Content-Length fields are one value (RFC 9110 §8.6). Paths are matched
// as sent (no normalisation), like Cilium's Envoy listener, whose HTTP connection manager
// does not set normalize_path.
//
// # Timeouts and bounded memory
//
// ReadHeaderTimeout (10s) bounds a request head from its first byte (the first request:
// from the accept); IdleTimeout (120s) the wait for the next request; IOTimeout (60s) how
// long a body read or any write may make no progress; ResponseTimeout (none by default) how
// long the destination's response may make no progress; DialTimeout (5s) the connect.
// MaxConns refuses connections beyond it with 503 without starting a goroutine.
//
// A connection costs one goroutine. Between requests it holds no buffer: after 20ms
// without a new request the read buffer goes back to a pool and the connection waits for
// readability without one (MSG_PEEK on Linux), and the upstream read buffer is dropped
// after every response; heads and bodies go through pooled buffers. Measured: 4–7 KiB per
// idle client connection and 7–8 KiB per idle client+upstream pair, goroutine stack
// included (docs/l7-proxy.md).
//
// # Events
//
// Every request produces one Event (Config.Events, called synchronously): addresses,
// direction, protocol, method, path, host, verdict (allowed, denied, error), the status
// the proxy answered itself, the rule origins and the header ops. A refused malformed
// request produces an error event.
package proxy
