package dnsproxy

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// parsedQuery is a parsed DNS query: its header and its one question.
type parsedQuery struct {
	hdr  dnsmessage.Header
	q    dnsmessage.Question
	name string // presentation form, lower-cased (Flow.Name)
}

// parseError says what to do with a message the proxy does not judge.
type parseError struct {
	formErr bool // answer FORMERR (the header parsed); otherwise drop it
	hdr     dnsmessage.Header
	reason  string
}

func (e *parseError) Error() string { return e.reason }

// parseQuery parses the header and the question of msg. A message that does not parse, or
// is a response, gives a parseError to drop; one with an opcode other than QUERY or a
// question count other than 1 gives one to answer FORMERR.
func parseQuery(msg []byte) (parsedQuery, *parseError) {
	var (
		p  dnsmessage.Parser
		qr parsedQuery
	)
	hdr, err := p.Start(msg)
	if err != nil {
		return qr, &parseError{reason: "malformed DNS message: " + err.Error()}
	}
	if hdr.Response {
		return qr, &parseError{reason: "DNS response sent as a query"}
	}
	if hdr.OpCode != 0 {
		return qr, &parseError{formErr: true, hdr: hdr, reason: "DNS opcode " + strconv.Itoa(int(hdr.OpCode)) + " is not QUERY"}
	}
	if n := binary.BigEndian.Uint16(msg[4:6]); n != 1 {
		return qr, &parseError{formErr: true, hdr: hdr, reason: "DNS query with " + strconv.Itoa(int(n)) + " questions"}
	}
	q, err := p.Question()
	if err != nil {
		return qr, &parseError{reason: "malformed DNS question: " + err.Error()}
	}
	qr.hdr, qr.q, qr.name = hdr, q, presentName(q.Name)
	return qr, nil
}

// presentName gives the name in presentation form: ASCII letters lower-cased (RFC 4343),
// bytes other than printable ASCII, and the backslash, as \DDD.
func presentName(n dnsmessage.Name) string {
	raw := n.Data[:n.Length]
	var b strings.Builder
	b.Grow(len(raw))
	for _, c := range raw {
		switch {
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c < 0x21 || c > 0x7e || c == '\\':
			b.WriteByte('\\')
			b.WriteByte('0' + c/100)
			b.WriteByte('0' + c/10%10)
			b.WriteByte('0' + c%10)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// reply builds the proxy's own answer to a query: same ID and opcode, QR set, RD and CD
// copied, the given rcode, the question echoed as sent when q is not nil, nothing else. With
// framed, it starts with the 2-byte TCP length prefix.
func reply(hdr dnsmessage.Header, q *dnsmessage.Question, rcode dnsmessage.RCode, framed bool) []byte {
	h := dnsmessage.Header{
		ID:                 hdr.ID,
		Response:           true,
		OpCode:             hdr.OpCode,
		RecursionDesired:   hdr.RecursionDesired,
		CheckingDisabled:   hdr.CheckingDisabled,
		RCode:              rcode,
		Authoritative:      false,
		Truncated:          false,
		RecursionAvailable: false,
	}
	prefix := 0
	if framed {
		prefix = 2
	}
	build := func(q *dnsmessage.Question) ([]byte, error) {
		size := prefix + 12
		if q != nil {
			size += int(q.Name.Length) + 6
		}
		b := dnsmessage.NewBuilder(make([]byte, prefix, size), h)
		if q != nil {
			if err := b.StartQuestions(); err != nil {
				return nil, err
			}
			if err := b.Question(*q); err != nil {
				return nil, err
			}
		}
		return b.Finish()
	}
	out, err := build(q)
	if err != nil {
		// A question that does not pack again (it cannot happen with one that parsed):
		// answer with the header alone.
		out, _ = build(nil)
	}
	if framed {
		binary.BigEndian.PutUint16(out, uint16(len(out)-2))
	}
	return out
}

// answerHeader parses the header of an upstream answer to the query with the given ID.
func answerHeader(msg []byte, id uint16) (dnsmessage.Header, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return h, errors.New("malformed answer: " + err.Error())
	}
	if !h.Response {
		return h, errors.New("answer without QR")
	}
	if h.ID != id {
		return h, errors.New("answer ID " + strconv.Itoa(int(h.ID)) + " is not the query's " + strconv.Itoa(int(id)))
	}
	return h, nil
}
