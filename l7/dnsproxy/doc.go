// Package dnsproxy is netward's DNS proxy: a transparent proxy that judges every DNS query
// by its question name, answers the denied ones REFUSED itself, and forwards the allowed
// ones, unchanged, to the DNS server the client asked.
//
// # Wiring
//
// The datapath redirects the datagrams and connections of a policy's DNS rules to the
// proxy port with nftables TPROXY in the node's network namespace. ServeUDP takes a UDP
// socket with IP_TRANSPARENT and IP_RECVORIGDSTADDR (ListenTransparentUDP): every datagram
// carries its original destination in an IP_ORIGDSTADDR control message (without one, the
// socket's LocalAddr is the destination, which is right for tests that ask the listener
// itself). ServeTCP takes a TPROXY listener (IP_TRANSPARENT): an accepted connection's
// LocalAddr is the original destination and its RemoteAddr the client.
//
// The proxy is transparent both ways. Config.DialUpstream opens the socket to the original
// destination; the agent binds it to the client's address with IP_TRANSPARENT, so the DNS
// server sees the client, and sets SO_MARK, so that the datapath does not redirect the
// proxy's own traffic again. Config.ReplyUDP sends an answer from the original destination's
// address (a stub resolver drops an answer from any other address);
// TransparentReplier does it with a socket made for each answer, bound to that foreign
// address with IP_TRANSPARENT and connected to the client (a socket kept bound to the
// server's address would receive other clients' datagrams through the node's
// socket-transparent rule). Over TCP the accepted connection already has the right
// addresses.
//
// # Judgement
//
// A message is parsed with golang.org/x/net/dns/dnsmessage: the header and the question,
// nothing more (the rest is the DNS server's business and is forwarded as it is). The
// Decider is called for every query as it arrives, with the client, the original
// destination, the transport, the question type and the question name in presentation
// form: ASCII letters lower-cased (names compare case-insensitively, RFC 4343), fully
// qualified with the trailing dot ("api.example.com."; the root is "."), and any byte that
// is not printable ASCII, and the backslash, written \DDD (RFC 1035 §5.1). dnsmessage
// rejects a label containing a dot, so no two names have the same form and a pattern over
// letters, digits, hyphens and dots matches only the names it means. A policy change
// applies to the next query, also on an open TCP connection.
//
// An allowed query is forwarded byte for byte and the answer relayed byte for byte (ID,
// the question in its original case (0x20 encoding), EDNS, TC bit and all; a truncated
// answer makes the client retry over TCP, which is judged again). A denied query is
// answered REFUSED: the query's ID, opcode, RD and CD, QR set, the question echoed as
// sent, no records. REFUSED is Cilium's default (--tofqdns-dns-reject-response-code=
// refused): it tells the client at once that this server will not answer, so it neither
// waits for a timeout nor retries, and unlike NXDOMAIN it asserts nothing about the name,
// which no negative cache keeps.
//
// What is not a query to judge:
//
//   - bytes that do not parse as a header and a question, or a response (QR set): dropped,
//     no answer (answering garbage would make the proxy a reflector);
//   - an opcode other than QUERY, or a question count other than 1: FORMERR with the
//     query's ID and opcode and no question (RFC 9619: a query has exactly one question).
//
// Each gives an error event.
//
// # UDP
//
// The listener reads with one 64 KiB buffer; each query is copied at its size and served on
// its own goroutine, at most MaxInFlight at once: beyond, a datagram is dropped with an
// error event (a client retries; a flood does not queue work). An allowed query gets its
// own upstream socket (DialUpstream("udp", client, destination)), so answers cannot be
// confused between queries; the answer is the first datagram with the query's ID and QR
// set, others (stray or spoofed) are ignored until Timeout (5s). No answer by then, or a
// failed dial or send, gives SERVFAIL and an error event. Waiting for an answer holds no
// buffer: on Linux its size is peeked (MSG_PEEK|MSG_TRUNC) and it is read into a buffer of
// that size.
//
// # TCP
//
// DNS over TCP frames every message with a 2-byte big-endian length (RFC 7766 §8; at most
// 65535 bytes). A client connection's queries are served one after the other and answered
// in order (pipelined queries wait in the socket); each must arrive completely within
// TCPIdleTimeout (10s) of the previous answer, or the connection is closed; the buffer of a
// message grows with the bytes received, not with the announced length. A denied query
// gets REFUSED on the same connection, which stays open. The allowed queries of a client
// connection go over one upstream connection (DialUpstream("tcp", client, destination)),
// dialed at the first allowed query; each waits, within Timeout, for exactly one framed
// answer with its ID. A failure gives SERVFAIL and drops the upstream connection, dialed
// again at the next allowed query; a kept connection the destination closed while idle is
// replaced once, transparently. MaxTCPConns (1024) bounds the open client connections: one
// beyond is closed at once.
//
// # Events and limits
//
// Every query gives one Event (Config.Events, called synchronously, from many goroutines):
// addresses, transport, name, type, verdict (allowed, denied, error), the rcode the client
// got (-1 when none) and the decision's origins and reason. Stats counts verdicts, drops,
// malformed messages, in-flight queries and connections. Memory is bounded: a 64 KiB read
// buffer per UDP listener, per query a copy of its size and one of its answer's, at most
// MaxInFlight UDP queries and MaxTCPConns connections of at most one message each. Close
// stops the listeners, closes the client and upstream sockets, cancels the Decider's
// context and waits for every goroutine.
package dnsproxy
