package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
)

var (
	errBadChunk    = errors.New("malformed chunked body")
	errBodyTooBig  = errors.New("body larger than the discard limit")
	errTrailerSize = errors.New("trailer section too large")
)

// bulkPool holds the buffers bodies are copied through when nothing is buffered.
var bulkPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyN relays exactly n bytes from src to dst. Whatever src has buffered is written
// through; when src would block, dst is flushed first so that a streamed body is never held
// back in the proxy, and large remainders bypass src's buffer.
func copyN(dst *bufio.Writer, src *bufio.Reader, n int64) error {
	for n > 0 {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return err
			}
			if n >= int64(src.Size()) {
				bp := bulkPool.Get().(*[]byte)
				buf := *bp
				if int64(len(buf)) > n {
					buf = buf[:n]
				}
				m, err := src.Read(buf)
				if m > 0 {
					if _, werr := dst.Write(buf[:m]); werr != nil {
						bulkPool.Put(bp)
						return werr
					}
					n -= int64(m)
				}
				bulkPool.Put(bp)
				if err != nil {
					return unexpected(err)
				}
				continue
			}
			if _, err := src.Peek(1); err != nil {
				return unexpected(err)
			}
		}
		k := src.Buffered()
		if int64(k) > n {
			k = int(n)
		}
		p, _ := src.Peek(k)
		if _, err := dst.Write(p); err != nil {
			return err
		}
		src.Discard(k)
		n -= int64(k)
	}
	return nil
}

// copyUntilEOF relays src to dst until src ends (a response delimited by the close of the
// connection).
func copyUntilEOF(dst *bufio.Writer, src *bufio.Reader) error {
	for {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return err
			}
			if _, err := src.Peek(1); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
		}
		p, _ := src.Peek(src.Buffered())
		if _, err := dst.Write(p); err != nil {
			return err
		}
		src.Discard(len(p))
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// maxChunkLine bounds a chunk-size line (size and extensions).
const maxChunkLine = 4096

// copyChunked relays a chunked body (RFC 9112 §7.1) from src to dst unchanged, byte for
// byte, and validates it: a chunk-size line is 1–16 hex digits fitting in 63 bits,
// optionally followed by whitespace and ";" extensions without control characters; chunk
// data is followed by CRLF; the trailer section has valid fields and at most maxTrailer
// bytes. strict (requests) refuses bare LF line ends and obs-fold in trailers; responses are
// relayed leniently there. limit > 0 bounds the wire size of the whole body (discarding a
// denied body).
func copyChunked(dst *bufio.Writer, src *bufio.Reader, maxTrailer int, strict bool, limit int64) error {
	var total int64
	for {
		line, err := readLine(dst, src, maxChunkLine)
		if err != nil {
			return err
		}
		total += int64(len(line))
		if limit > 0 && total > limit {
			return errBodyTooBig
		}
		content, ok := lineContent(line, strict)
		if !ok {
			return errBadChunk
		}
		size, ok := parseChunkSize(content)
		if !ok {
			return errBadChunk
		}
		if _, err := dst.Write(line); err != nil {
			return err
		}
		if size == 0 {
			break
		}
		total += size + 2
		if limit > 0 && total > limit {
			return errBodyTooBig
		}
		if err := copyN(dst, src, size); err != nil {
			return err
		}
		if err := copyCRLF(dst, src, strict); err != nil {
			return err
		}
	}
	// Trailer section, then the final empty line.
	n := 0
	for {
		line, err := readLine(dst, src, maxChunkLine)
		if err != nil {
			return err
		}
		n += len(line)
		if n > maxTrailer {
			return errTrailerSize
		}
		content, ok := lineContent(line, strict)
		if !ok {
			return errBadChunk
		}
		if len(content) > 0 && (strict || content[0] != ' ' && content[0] != '\t') {
			colon := bytes.IndexByte(content, ':')
			if colon <= 0 || !isToken(content[:colon]) || strict && !validValue(trimOWS(content[colon+1:])) {
				return errBadChunk
			}
		}
		if _, err := dst.Write(line); err != nil {
			return err
		}
		if len(content) == 0 {
			return nil
		}
	}
}

// copyCRLF relays the line end after chunk data: CRLF, or a bare LF when not strict. It
// looks at no more bytes than that, so junk fails at once.
func copyCRLF(dst *bufio.Writer, src *bufio.Reader, strict bool) error {
	if src.Buffered() < 2 {
		if err := dst.Flush(); err != nil {
			return err
		}
	}
	b, err := src.Peek(1)
	if err != nil {
		return unexpected(err)
	}
	n := 1
	if b[0] == '\r' {
		if b, err = src.Peek(2); err != nil {
			return unexpected(err)
		}
		if b[1] != '\n' {
			return errBadChunk
		}
		n = 2
	} else if b[0] != '\n' || strict {
		return errBadChunk
	}
	if _, err := dst.Write(b[:n]); err != nil {
		return err
	}
	src.Discard(n)
	return nil
}

// readLine reads one line (terminator included) of at most max bytes, flushing dst first
// when the line is not buffered yet. The returned slice is only valid until the next read
// from src.
func readLine(dst *bufio.Writer, src *bufio.Reader, max int) ([]byte, error) {
	if p, _ := src.Peek(src.Buffered()); bytes.IndexByte(p, '\n') < 0 {
		if err := dst.Flush(); err != nil {
			return nil, err
		}
	}
	line, err := src.ReadSlice('\n')
	if err == bufio.ErrBufferFull || err == nil && len(line) > max {
		return nil, errBadChunk
	}
	if err != nil {
		return nil, unexpected(err)
	}
	if len(line) > max {
		return nil, errBadChunk
	}
	return line, nil
}

// lineContent strips the line terminator: CRLF, or a bare LF when not strict. A CR
// anywhere else makes the line invalid.
func lineContent(line []byte, strict bool) ([]byte, bool) {
	n := len(line) - 1 // the '\n'
	if n > 0 && line[n-1] == '\r' {
		n--
	} else if strict {
		return nil, false
	}
	return line[:n], true
}

// parseChunkSize parses "1*HEXDIG [ BWS ; chunk-ext ]".
func parseChunkSize(b []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(b); i++ {
		c := b[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 {
			return 0, false // would not fit in 63 bits
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, false
	}
	rest := b[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return n, len(b) == i // no trailing whitespace without an extension
	}
	if rest[0] != ';' || !validValue(rest) {
		return 0, false
	}
	return n, true
}
