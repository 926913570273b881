package proxy

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// parseError is a request the proxy refuses before any policy decision: it answers with
// status and closes the connection.
type parseError struct {
	status int
	reason string
}

func (e *parseError) Error() string { return e.reason }

func badRequest(reason string) *parseError {
	return &parseError{status: http.StatusBadRequest, reason: reason}
}

var (
	errHeadTooLarge = &parseError{status: http.StatusRequestHeaderFieldsTooLarge, reason: "request header section too large"}
	errTooManyLines = &parseError{status: http.StatusRequestHeaderFieldsTooLarge, reason: "too many header fields"}
	errBareLF       = badRequest("line not terminated by CRLF")
)

// bodyKind is how a message body is delimited (RFC 9112 §6).
type bodyKind uint8

const (
	bodyNone bodyKind = iota
	bodyLength
	bodyChunked
	bodyUntilClose // responses only
)

// field is one header field line of a head: its canonical name, its value without OWS, and
// the byte range of the whole line (CRLF included) in the raw head, for rewriting.
type field struct {
	name, value string
	start, end  int
}

// reqHead is a parsed request head. raw is exactly the bytes received, so an allowed request
// is forwarded unchanged.
type reqHead struct {
	raw    []byte
	method string
	target string
	minor  int // HTTP/1.<minor>
	fields []field
	header http.Header
	vals   []string // backing store of the single-value entries of header

	// What the L7 rules see (Envoy's :path and :authority): for the absolute form the path
	// and the authority of the URI, otherwise the target and the Host header.
	path, host string

	body     bodyKind
	length   int64
	close    bool   // the client ends the connection after this exchange
	upgrade  string // the Upgrade field when Connection lists "upgrade"
	expect   bool   // Expect: 100-continue
	h2c      bool   // a valid h2c upgrade the proxy terminates (RFC 7540 §3.2)
	settings []byte // decoded HTTP2-Settings of an h2c upgrade
	strip    bool   // decline an h2c upgrade: drop Upgrade and HTTP2-Settings when forwarding
	preface  bool   // "PRI * HTTP/2.0": the HTTP/2 connection preface
}

func (h *reqHead) proto() string {
	if h.minor == 0 {
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

// readHead reads a message head (start line, fields, empty line) from br into buf and
// returns it. Every line must end with CRLF unless lenient (responses), and the head may
// not exceed max bytes nor maxLines lines. Empty lines before the start line are skipped
// (RFC 9112 §2.2). It returns io.EOF when the stream ends before any byte of a head. first,
// if set, checks the start line as soon as it is complete, so that garbage fails before
// the head would end.
func readHead(br *bufio.Reader, buf []byte, max, maxLines int, lenient bool, first func([]byte) error) ([]byte, error) {
	buf = buf[:0]
	lines := 0
	lineStart := 0
	skipped := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag)+skipped > max {
			return buf, errHeadTooLarge
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(buf) == 0 && lines == 0 {
				return buf, io.EOF
			}
			if err == io.EOF {
				return buf, io.ErrUnexpectedEOF
			}
			return buf, err
		}
		line := buf[lineStart:]
		if !lenient && (len(line) < 2 || line[len(line)-2] != '\r') {
			return buf, errBareLF
		}
		empty := len(line) == 2 && line[0] == '\r' || lenient && len(line) == 1
		if empty && lines == 0 {
			// Robustness: ignore empty lines before the start line (bounded).
			skipped += len(line)
			buf = buf[:lineStart]
			if skipped > 64 {
				return buf, badRequest("too many empty lines before the request line")
			}
			continue
		}
		if empty {
			return buf, nil
		}
		if lines == 0 && first != nil {
			if err := first(line); err != nil {
				return buf, err
			}
		}
		lines++
		if lines > maxLines+1 {
			return buf, errTooManyLines
		}
		lineStart = len(buf)
	}
}

// nextLine returns the line of raw starting at off without its terminator, and the offset of
// the next line.
func nextLine(raw []byte, off int) (line []byte, next int) {
	i := bytes.IndexByte(raw[off:], '\n')
	if i < 0 {
		return raw[off:], len(raw)
	}
	end := off + i
	next = end + 1
	if end > off && raw[end-1] == '\r' {
		end--
	}
	return raw[off:end], next
}

func isTokenByte(b byte) bool { return b < 0x80 && httpguts.IsTokenRune(rune(b)) }

func isToken(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, b := range s {
		if !isTokenByte(b) {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// validValue reports whether b is a valid field value (RFC 9110 §5.5): visible ASCII,
// obs-text, SP and HTAB; no other control character.
func validValue(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// checkRequestLine validates a request line (with its line end) as soon as it is read.
func checkRequestLine(line []byte) error {
	l, _ := nextLine(line, 0)
	if _, _, _, pe := parseRequestLine(l); pe != nil {
		return pe
	}
	return nil
}

// parseRequestLine parses request-line = method SP request-target SP HTTP-version. minor is
// the HTTP/1 minor version, or -1 for the HTTP/2 preface line "PRI * HTTP/2.0".
func parseRequestLine(line []byte) (method, target []byte, minor int, pe *parseError) {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		if !isToken(line) {
			return nil, nil, 0, badRequest("invalid method")
		}
		return nil, nil, 0, badRequest("malformed request line")
	}
	method = line[:sp1]
	if !isToken(method) {
		return nil, nil, 0, badRequest("invalid method")
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return nil, nil, 0, badRequest("malformed request line")
	}
	target, version := rest[:sp2], rest[sp2+1:]
	if len(target) == 0 {
		return nil, nil, 0, badRequest("empty request target")
	}
	for _, c := range target {
		if c <= 0x20 || c >= 0x7f {
			return nil, nil, 0, badRequest("invalid character in the request target")
		}
	}
	switch string(version) {
	case "HTTP/1.1":
		return method, target, 1, nil
	case "HTTP/1.0":
		return method, target, 0, nil
	case "HTTP/2.0":
		if string(method) == "PRI" && string(target) == "*" {
			return method, target, -1, nil
		}
	}
	if len(version) == 8 && string(version[:5]) == "HTTP/" && version[6] == '.' &&
		version[5] >= '0' && version[5] <= '9' && version[7] >= '0' && version[7] <= '9' {
		return nil, nil, 0, &parseError{status: http.StatusHTTPVersionNotSupported, reason: "unsupported HTTP version"}
	}
	return nil, nil, 0, badRequest("malformed HTTP version")
}

// parseRequestHead parses a request head strictly; see the package documentation for what
// is refused and why.
func parseRequestHead(raw []byte, h *reqHead) *parseError {
	hdr, vals := h.header, h.vals[:0]
	*h = reqHead{raw: raw, fields: h.fields[:0]}
	line, off := nextLine(raw, 0)
	method, target, minor, pe := parseRequestLine(line)
	if pe != nil {
		return pe
	}
	if minor < 0 {
		if off != len(raw)-2 {
			return badRequest("malformed HTTP/2 connection preface")
		}
		h.preface = true
		h.method, h.target = "PRI", "*"
		return nil
	}
	h.minor = minor
	h.method = string(method)
	h.target = string(target)

	// Fields.
	// The header map and the value slices are reused from request to request of a
	// connection (Flow.Request is only valid during Decide).
	if hdr == nil {
		hdr = make(http.Header, 8)
	} else {
		clear(hdr)
	}
	h.header = hdr
	var (
		hosts, cls, tes int
		clValue         = int64(-1)
		connection      []string
		settingsFields  int
	)
	for off < len(raw)-2 {
		start := off
		var l []byte
		l, off = nextLine(raw, off)
		if len(l) > 0 && (l[0] == ' ' || l[0] == '\t') {
			return badRequest("obsolete line folding")
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 {
			return badRequest("malformed header field")
		}
		name := l[:colon]
		if !isToken(name) {
			return badRequest("invalid header field name")
		}
		value := trimOWS(l[colon+1:])
		if !validValue(value) {
			return badRequest("invalid header field value")
		}
		key := canonicalKey(name)
		v := string(value)
		if old, ok := h.header[key]; ok {
			h.header[key] = append(old, v)
		} else {
			vals = append(vals, v)
			h.header[key] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
		h.fields = append(h.fields, field{name: key, value: v, start: start, end: off})
		switch key {
		case "Host":
			hosts++
		case "Content-Length":
			cls++
			// One value per field; repeated fields must agree (RFC 9110 §8.6). A list in one
			// field is refused, as net/http does.
			n, ok := parseLength(v)
			if !ok {
				return badRequest("invalid Content-Length")
			}
			if clValue >= 0 && n != clValue {
				return badRequest("conflicting Content-Length values")
			}
			clValue = n
		case "Transfer-Encoding":
			tes++
		case "Connection":
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					connection = append(connection, strings.ToLower(t))
				}
			}
		case "Expect":
			if strings.EqualFold(v, "100-continue") {
				h.expect = true
			}
		case "Http2-Settings":
			settingsFields++
		}
	}

	h.vals = vals

	// Host (RFC 9112 §3.2): exactly one in HTTP/1.1, at most one in HTTP/1.0.
	if hosts > 1 {
		return badRequest("more than one Host header field")
	}
	if hosts == 0 && h.minor == 1 {
		return badRequest("missing Host header field")
	}
	if hosts == 1 {
		h.host = h.header["Host"][0]
		if !validAuthority(h.host, true) {
			return badRequest("invalid Host header field")
		}
	}

	// Request target forms (RFC 9112 §3.2).
	switch {
	case h.method == "CONNECT":
		if !validAuthority(h.target, false) {
			return badRequest("CONNECT needs an authority-form target")
		}
		h.host = h.target
		h.path = ""
	case h.target[0] == '/':
		h.path = h.target
	case h.target == "*":
		if h.method != "OPTIONS" {
			return badRequest("asterisk-form target outside OPTIONS")
		}
		h.path = "*"
	default:
		scheme, rest, ok := strings.Cut(h.target, "://")
		if !ok || !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
			return badRequest("malformed request target")
		}
		authority, path := rest, "/"
		if i := strings.IndexAny(rest, "/?"); i >= 0 {
			authority, path = rest[:i], rest[i:]
			if path[0] == '?' {
				path = "/" + path
			}
		}
		if !validAuthority(authority, false) {
			return badRequest("invalid authority in the request target")
		}
		h.host, h.path = authority, path
	}

	// Message body framing (RFC 9112 §6.1–6.3), refusing every ambiguity.
	if tes > 0 {
		if cls > 0 {
			return badRequest("both Transfer-Encoding and Content-Length")
		}
		if h.minor == 0 {
			return badRequest("Transfer-Encoding in an HTTP/1.0 request")
		}
		if tes > 1 {
			return badRequest("more than one Transfer-Encoding field")
		}
		if !strings.EqualFold(h.header["Transfer-Encoding"][0], "chunked") {
			return &parseError{status: http.StatusNotImplemented, reason: "unsupported transfer coding"}
		}
		h.body = bodyChunked
	} else if clValue > 0 {
		h.body, h.length = bodyLength, clValue
	}

	// Connection management.
	h.close = h.minor == 0 && !containsToken(connection, "keep-alive") || containsToken(connection, "close")
	if up, ok := h.header["Upgrade"]; ok && containsToken(connection, "upgrade") {
		h.upgrade = strings.Join(up, ", ")
	}
	if hasToken(h.header["Upgrade"], "h2c") {
		h.strip = true
		if h.upgrade != "" && h.minor == 1 && h.body == bodyNone && h.method != "CONNECT" &&
			settingsFields == 1 && containsToken(connection, "http2-settings") {
			if s, err := decodeSettings(h.header["Http2-Settings"][0]); err == nil {
				h.h2c, h.settings, h.strip = true, s, false
			}
		}
	}
	return nil
}

// validAuthority reports whether s is a host with an optional port made of letters,
// digits, "-", ".", "_", "~", ":" and IPv6 brackets only: no userinfo, no percent-encoding
// (which a destination may decode and the rules would not see), nothing else. An empty
// Host field is allowed (RFC 9112 §3.2), an empty URI authority is not.
func validAuthority(s string, emptyOK bool) bool {
	if s == "" {
		return emptyOK
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}

// commonKeys maps the usual spellings of common field names to their canonical form, so
// that canonicalising them does not allocate.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Host", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language",
		"Authorization", "Cache-Control", "Connection", "Content-Length", "Content-Type", "Cookie",
		"Expect", "Origin", "Referer", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Keep-Alive",
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id", "Traceparent", "Http2-Settings"} {
		m[k] = k
		m[strings.ToLower(k)] = k
	}
	return m
}()

// canonicalKey is http.CanonicalHeaderKey for a field name in bytes.
func canonicalKey(name []byte) string {
	if k, ok := commonKeys[string(name)]; ok {
		return k
	}
	return http.CanonicalHeaderKey(string(name))
}

func containsToken(tokens []string, t string) bool {
	for _, x := range tokens {
		if x == t {
			return true
		}
	}
	return false
}

// hasToken reports whether a comma-separated field lists token t (case-insensitive).
func hasToken(values []string, t string) bool {
	return httpguts.HeaderValuesContainsToken(values, t)
}

// parseLengthBytes is parseLength for a response's Content-Length, which may be a list of
// identical values (RFC 9110 §8.6).
func parseLengthBytes(b []byte) (int64, bool) {
	n := int64(-1)
	for len(b) > 0 {
		part := b
		if i := bytes.IndexByte(b, ','); i >= 0 {
			part, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		v, ok := parseLength(string(trimOWS(part)))
		if !ok || n >= 0 && v != n {
			return 0, false
		}
		n = v
	}
	return n, n >= 0
}

// parseLength parses 1*DIGIT into a non-negative int64.
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// headerChange is the final state of one header field after header ops: every line of it
// is dropped from the raw head and values (if any) are appended as "name: value" lines.
type headerChange struct {
	key    string // canonical
	name   string // as the rule spells it
	values []string
}

// rewrite returns the head to forward: raw without the fields that changes replace (and,
// when declining an h2c upgrade, without Upgrade and HTTP2-Settings and their Connection
// tokens), followed by the changed fields.
func (h *reqHead) rewrite(changes []headerChange) []byte {
	drop := func(name string) bool {
		if h.strip && (name == "Upgrade" || name == "Http2-Settings") {
			return true
		}
		for _, c := range changes {
			if c.key == name {
				return true
			}
		}
		return false
	}
	_, first := nextLine(h.raw, 0)
	out := make([]byte, 0, len(h.raw)+64)
	out = append(out, h.raw[:first]...)
	for _, f := range h.fields {
		if drop(f.name) {
			continue
		}
		if h.strip && f.name == "Connection" {
			var keep []string
			for _, t := range strings.Split(f.value, ",") {
				t = strings.TrimSpace(t)
				if t != "" && !strings.EqualFold(t, "upgrade") && !strings.EqualFold(t, "http2-settings") {
					keep = append(keep, t)
				}
			}
			if len(keep) > 0 {
				out = append(out, "Connection: "+strings.Join(keep, ", ")+"\r\n"...)
			}
			continue
		}
		out = append(out, h.raw[f.start:f.end]...)
	}
	for _, c := range changes {
		for _, v := range c.values {
			out = append(out, c.name...)
			out = append(out, ": "...)
			out = append(out, v...)
			out = append(out, '\r', '\n')
		}
	}
	return append(out, '\r', '\n')
}

// respHead is a parsed response head (lenient where relaying cannot desynchronise the
// client, strict about framing).
type respHead struct {
	status  int
	minor   int
	close   bool
	body    bodyKind
	length  int64
	upgrade string
}

var errBadResponse = errors.New("malformed response from the upstream")

func parseResponseHead(raw []byte, r *respHead) error {
	*r = respHead{}
	line, off := nextLine(raw, 0)
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return errBadResponse
	}
	r.minor = int(line[7] - '0')
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 || code > 999 || len(line) > 12 && line[12] != ' ' {
		return errBadResponse
	}
	r.status = code
	var (
		te, keepAlive bool
		chunkedLast   bool
		cl            = int64(-1)
		upgrade       []string
	)
	for off < len(raw) {
		var l []byte
		l, off = nextLine(raw, off)
		if len(l) == 0 {
			break
		}
		if l[0] == ' ' || l[0] == '\t' {
			continue // obs-fold: relayed as received; never a framing field (checked below)
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 {
			return errBadResponse
		}
		name := l[:colon]
		value := trimOWS(l[colon+1:])
		switch {
		case equalFold(name, "content-length"):
			n, ok := parseLengthBytes(value)
			if !ok || cl >= 0 && n != cl {
				return errBadResponse
			}
			cl = n
		case equalFold(name, "transfer-encoding"):
			te = true
			codings := strings.Split(string(value), ",")
			chunkedLast = strings.EqualFold(strings.TrimSpace(codings[len(codings)-1]), "chunked")
		case equalFold(name, "connection"):
			for _, t := range strings.Split(string(value), ",") {
				t = strings.TrimSpace(t)
				if strings.EqualFold(t, "close") {
					r.close = true
				} else if strings.EqualFold(t, "keep-alive") {
					keepAlive = true
				}
			}
		case equalFold(name, "upgrade"):
			upgrade = append(upgrade, string(value))
		}
	}
	if r.minor == 0 && !keepAlive {
		r.close = true
	}
	r.upgrade = strings.Join(upgrade, ", ")
	switch {
	case te && chunkedLast:
		r.body = bodyChunked
		if cl >= 0 {
			r.close = true // RFC 9112 §6.3: close after a message with both
		}
	case te:
		r.body = bodyUntilClose
	case cl > 0:
		r.body, r.length = bodyLength, cl
	case cl == 0:
		r.body = bodyNone
	default:
		r.body = bodyUntilClose
	}
	return nil
}

func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// decodeSettings decodes an HTTP2-Settings field (base64url, RFC 7540 §3.2.1) and checks it
// holds whole settings.
func decodeSettings(v string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
	if err != nil {
		return nil, err
	}
	if len(b)%6 != 0 {
		return nil, errors.New("HTTP2-Settings is not a list of settings")
	}
	return b, nil
}
