package report_test

import (
	"fmt"
	"html"
	"strings"
)

// node is an element (tag set) or a text node of a parsed HTML document.
type node struct {
	tag      string
	attrs    map[string]string
	children []*node
	text     string
}

var voidElements = map[string]bool{"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true,
	"img": true, "input": true, "link": true, "meta": true, "source": true, "track": true, "wbr": true}

var rawTextElements = map[string]bool{"script": true, "style": true, "title": true, "textarea": true}

// parseHTML is a strict little HTML parser for well-formed documents: what netward writes
// and what Chromium serializes with --dump-dom (every non-void element closed explicitly,
// attributes quoted, script and style as raw text). It fails on unbalanced or mismatched
// tags, unterminated comments, tags and attribute values, so a document it accepts has the
// tree structure its markup shows.
func parseHTML(s string) (*node, error) {
	root := &node{tag: "#document"}
	stack := []*node{root}
	top := func() *node { return stack[len(stack)-1] }
	i := 0
	for i < len(s) {
		if s[i] != '<' || i+1 >= len(s) || !(isLetter(s[i+1]) || s[i+1] == '/' || s[i+1] == '!') {
			j := strings.IndexByte(s[i+1:], '<')
			end := len(s)
			if j >= 0 {
				end = i + 1 + j
			}
			top().children = append(top().children, &node{text: html.UnescapeString(s[i:end])})
			i = end
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "<!--"):
			j := strings.Index(s[i+4:], "-->")
			if j < 0 {
				return nil, fmt.Errorf("offset %d: unterminated comment", i)
			}
			i += 4 + j + 3
		case s[i+1] == '!':
			j := strings.IndexByte(s[i:], '>')
			if j < 0 {
				return nil, fmt.Errorf("offset %d: unterminated declaration", i)
			}
			i += j + 1
		case s[i+1] == '/':
			j := strings.IndexByte(s[i:], '>')
			if j < 0 {
				return nil, fmt.Errorf("offset %d: unterminated end tag", i)
			}
			name := strings.ToLower(strings.TrimSpace(s[i+2 : i+j]))
			if len(stack) == 1 || top().tag != name {
				return nil, fmt.Errorf("offset %d: </%s> closes <%s>", i, name, top().tag)
			}
			stack = stack[:len(stack)-1]
			i += j + 1
		default:
			n, end, selfClosing, err := parseStartTag(s, i)
			if err != nil {
				return nil, err
			}
			top().children = append(top().children, n)
			i = end
			if rawTextElements[n.tag] {
				closeTag := "</" + n.tag
				j := strings.Index(strings.ToLower(s[i:]), closeTag)
				if j < 0 {
					return nil, fmt.Errorf("offset %d: <%s> not closed", i, n.tag)
				}
				text := s[i : i+j]
				if n.tag == "title" || n.tag == "textarea" {
					text = html.UnescapeString(text)
				}
				n.children = append(n.children, &node{text: text})
				k := strings.IndexByte(s[i+j:], '>')
				if k < 0 {
					return nil, fmt.Errorf("offset %d: unterminated end tag", i+j)
				}
				i += j + k + 1
				continue
			}
			if !selfClosing && !voidElements[n.tag] {
				stack = append(stack, n)
			}
		}
	}
	if len(stack) != 1 {
		return nil, fmt.Errorf("<%s> not closed at the end of the document", top().tag)
	}
	return root, nil
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

func parseStartTag(s string, i int) (*node, int, bool, error) {
	j := i + 1
	for j < len(s) && !isSpace(s[j]) && s[j] != '>' && s[j] != '/' {
		j++
	}
	n := &node{tag: strings.ToLower(s[i+1 : j]), attrs: map[string]string{}}
	for {
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		if j >= len(s) {
			return nil, 0, false, fmt.Errorf("offset %d: unterminated <%s>", i, n.tag)
		}
		if s[j] == '>' {
			return n, j + 1, false, nil
		}
		if strings.HasPrefix(s[j:], "/>") {
			return n, j + 2, true, nil
		}
		k := j
		for k < len(s) && !isSpace(s[k]) && s[k] != '=' && s[k] != '>' && !strings.HasPrefix(s[k:], "/>") {
			k++
		}
		name := strings.ToLower(s[j:k])
		if name == "" {
			return nil, 0, false, fmt.Errorf("offset %d: bad attribute in <%s>", j, n.tag)
		}
		j = k
		value := ""
		if j < len(s) && s[j] == '=' {
			j++
			if j >= len(s) {
				return nil, 0, false, fmt.Errorf("offset %d: unterminated <%s>", i, n.tag)
			}
			if q := s[j]; q == '"' || q == '\'' {
				e := strings.IndexByte(s[j+1:], q)
				if e < 0 {
					return nil, 0, false, fmt.Errorf("offset %d: unterminated attribute %s", j, name)
				}
				value = s[j+1 : j+1+e]
				j += e + 2
			} else {
				e := j
				for e < len(s) && !isSpace(s[e]) && s[e] != '>' {
					e++
				}
				value = s[j:e]
				j = e
			}
		}
		if _, dup := n.attrs[name]; dup {
			return nil, 0, false, fmt.Errorf("offset %d: duplicate attribute %s in <%s>", j, name, n.tag)
		}
		n.attrs[name] = html.UnescapeString(value)
	}
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' }

// all returns the elements under n (n included) that pred accepts, in document order.
func (n *node) all(pred func(*node) bool) []*node {
	var out []*node
	var walk func(*node)
	walk = func(x *node) {
		if x.tag != "" && pred(x) {
			out = append(out, x)
		}
		for _, c := range x.children {
			walk(c)
		}
	}
	walk(n)
	return out
}

// first returns the first element under n that pred accepts, or nil.
func (n *node) first(pred func(*node) bool) *node {
	if found := n.all(pred); len(found) > 0 {
		return found[0]
	}
	return nil
}

// text is the text content of n.
func (n *node) textContent() string {
	if n == nil {
		return ""
	}
	if n.tag == "" {
		return n.text
	}
	var b strings.Builder
	for _, c := range n.children {
		b.WriteString(c.textContent())
	}
	return b.String()
}

func (n *node) hasClass(c string) bool {
	return n != nil && n.attrs != nil && strings.Contains(" "+n.attrs["class"]+" ", " "+c+" ")
}

// sel builds a predicate: tag (or "" for any), then attribute name/value pairs; a value
// of "*" only asks for the attribute, ".x" for a class.
func sel(tag string, kv ...string) func(*node) bool {
	return func(n *node) bool {
		if tag != "" && n.tag != tag {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v, ok := n.attrs[kv[i]]
			switch {
			case kv[i] == "class":
				if !n.hasClass(kv[i+1]) {
					return false
				}
			case !ok:
				return false
			case kv[i+1] != "*" && v != kv[i+1]:
				return false
			}
		}
		return true
	}
}
