package bundle

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
)

// The key = value and YAML scanner of the redactor: which keys name a
// secret and where their values end (inline, quoted, block scalars, lists).

// blockIndicator is a YAML block scalar header ("|", ">-", "|2").
var blockIndicator = regexp.MustCompile(`^[|>][+-]?[0-9]?[+-]?$`)

// mappingItem is a YAML list item that is itself a mapping ("- key: v").
var mappingItem = regexp.MustCompile(`^[A-Za-z_"'][^:]*:(\s|$)`)

// keyKind says whether a key names a secret.
type keyKind int

const (
	keyPlain keyKind = iota
	keySecret
	keyAuthorization // the value is "<scheme> <credential>"
)

var secretWords = map[string]bool{
	"pin": true, "password": true, "passwd": true, "pass": true, "passphrase": true,
	"secret": true, "token": true, "apikey": true, "credential": true, "credentials": true,
	"cookie": true,
	// compounds written as one word
	"sopin": true, "userpin": true, "apitoken": true, "authtoken": true, "accesstoken": true,
	"refreshtoken": true, "clientsecret": true, "secretkey": true, "accesskey": true, "privatekey": true,
}

// keyQualifiers make a trailing "key" a secret (api_key, secret-key, ...).
var keyQualifiers = map[string]bool{"api": true, "secret": true, "access": true, "private": true, "signing": true, "encryption": true, "master": true}

// classifyKey splits a key into words (at _ . - and camelCase boundaries)
// and looks at the last one: "user_pin", "HSM_PIN", "X-Api-Key", "apiKey",
// "client_secret" are secrets; "pin_file", "token_label", "serial" are not.
func classifyKey(key string) keyKind {
	words := splitWords(key)
	if len(words) == 0 {
		return keyPlain
	}
	last := words[len(words)-1]
	switch {
	case last == "authorization":
		return keyAuthorization
	case secretWords[last]:
		return keySecret
	case last == "key" && len(words) > 1 && slices.ContainsFunc(words[:len(words)-1], func(w string) bool { return keyQualifiers[w] }):
		return keySecret
	}
	return keyPlain
}

func splitWords(key string) []string {
	var words []string
	var cur []rune
	runes := []rune(key)
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	isUpper := func(r rune) bool { return r >= 'A' && r <= 'Z' }
	isLower := func(r rune) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' }
	for i, c := range runes {
		if !isUpper(c) && !isLower(c) {
			flush()
			continue
		}
		if i > 0 && isUpper(c) {
			prev := runes[i-1]
			nextLower := i+1 < len(runes) && runes[i+1] >= 'a' && runes[i+1] <= 'z'
			if isLower(prev) || (isUpper(prev) && nextLower) {
				flush()
			}
		}
		cur = append(cur, c)
	}
	flush()
	return words
}

// placeholders are values that are no secret (already hidden, or empty).
var placeholders = map[string]bool{
	"": true, Redacted: true, "<secret>": true, "null": true, "~": true, "true": true, "false": true,
	"nil": true, "none": true, "None": true, "*": true, "***": true, "[REDACTED]": true, "REDACTED": true,
}

func isPlaceholder(v string) bool {
	v = strings.TrimSpace(v)
	return placeholders[v] || strings.Contains(v, Redacted) || strings.Contains(v, "<secret>")
}

// isPlaceholderPrefix reports whether a value starts with a redaction mark.
func isPlaceholderPrefix(v string) bool {
	return strings.HasPrefix(v, Redacted) || strings.HasPrefix(v, "<secret>")
}

// redactAssignments replaces the values of secret-named keys. It walks the
// separators (':' and '=') and looks back for the key before each, so that
// the cost stays linear in the text, long single lines included.
func redactAssignments(s string) (string, int) {
	var spans []span
	lines := lineCursor{s: s}
	for pos := 0; pos < len(s); {
		j := strings.IndexAny(s[pos:], ":=")
		if j < 0 {
			break
		}
		sepPos := pos + j
		pos = sepPos + 1
		// Back over blanks, a closing quote and the key.
		k := sepPos
		for k > 0 && (s[k-1] == ' ' || s[k-1] == '\t') {
			k--
		}
		var closeQ byte
		if k > 0 && (s[k-1] == '"' || s[k-1] == '\'') {
			closeQ = s[k-1]
			k--
		}
		keyEnd := k
		for k > 0 && isKeyByte(s[k-1]) {
			k--
		}
		for k < keyEnd && !isKeyStart(s[k]) {
			k++
		}
		if k == keyEnd || !mayBeSecretKey(s[k:keyEnd]) {
			continue
		}
		kind := classifyKey(s[k:keyEnd])
		if kind == keyPlain {
			continue
		}
		keyStart, matchStart := k, k
		if closeQ != 0 {
			if k == 0 || s[k-1] != closeQ {
				continue // "key' is no key
			}
			matchStart = k - 1
		}
		v := sepPos + 1
		for v < len(s) && (s[v] == ' ' || s[v] == '\t') {
			v++
		}
		lineStart := lines.start(matchStart)
		atLineStart := isLineLead(s[lineStart:matchStart])
		found, next := valueSpans(s, v, lines.end(v), s[sepPos], atLineStart, closeQ == '"', kind, keyStart-lineStart)
		pos = max(pos, next)
		spans = append(spans, found...)
	}
	all := mergeSpans(spans)
	return replaceSpans(s, all), len(all)
}

// isKeyByte reports whether c may be part of a key.
func isKeyByte(c byte) bool { return isWordByte(c) || c == '_' || c == '.' || c == '-' }

// isKeyStart reports whether a key may start with c.
func isKeyStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// keyHints are in every secret-named key (lower case); a key without any is
// not split into words.
var keyHints = [][]byte{[]byte("pin"), []byte("pass"), []byte("secret"), []byte("token"), []byte("key"), []byte("cred"), []byte("cookie"), []byte("auth")}

func mayBeSecretKey(k string) bool {
	var buf [64]byte
	if len(k) > len(buf) {
		return true
	}
	l := asciiLower(buf[:0], k)
	return slices.ContainsFunc(keyHints, func(h []byte) bool { return bytes.Contains(l, h) })
}

// asciiLower appends s with ASCII letters lowered; byte offsets do not move.
func asciiLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// lineCursor finds line bounds for positions that only move forward,
// scanning each byte of the text a bounded number of times.
type lineCursor struct {
	s              string
	scanned, ls    int // ls: start of the line holding position scanned
	endFrom, endAt int // the newline (or len) found from endFrom
}

// start returns the start of the line holding p (p never decreases).
func (c *lineCursor) start(p int) int {
	if p < c.scanned {
		return strings.LastIndexByte(c.s[:p], '\n') + 1
	}
	if i := strings.LastIndexByte(c.s[c.scanned:p], '\n'); i >= 0 {
		c.ls = c.scanned + i + 1
	}
	c.scanned = p
	return c.ls
}

// end returns the position of the newline ending the line holding p, or len(s).
func (c *lineCursor) end(p int) int {
	if p >= c.endFrom && p <= c.endAt && c.endAt > 0 {
		return c.endAt
	}
	c.endFrom = p
	if i := strings.IndexByte(c.s[p:], '\n'); i >= 0 {
		c.endAt = p + i
	} else {
		c.endAt = len(c.s)
	}
	return c.endAt
}

// isLineLead reports whether what precedes a key on its line leaves the key
// at the start of the line (indentation, a YAML "- ", "export ").
func isLineLead(p string) bool {
	p = strings.TrimLeft(p, " \t")
	for {
		switch {
		case strings.HasPrefix(p, "- "):
			p = strings.TrimLeft(p[2:], " \t")
		case strings.HasPrefix(p, "export "):
			p = strings.TrimLeft(p[7:], " \t")
		default:
			return p == ""
		}
	}
}

// valueSpans finds the value that starts at v (its line ends at eol). It
// returns the spans to redact (the value, or the YAML block scalar or list
// under the key) and where scanning may continue.
func valueSpans(s string, v, eol int, sep byte, atLineStart, jsonKey bool, kind keyKind, keyCol int) (spans []span, next int) {
	line := s[v:eol]
	if v >= len(s) || strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
		if sep == ':' && atLineStart {
			return yamlListBlock(s, eol, keyCol), v
		}
		return nil, v
	}
	var a, b int
	switch c := s[v]; c {
	case '"':
		a = v + 1
		b = a
		for b < eol && s[b] != '"' {
			if s[b] == '\\' {
				b++
			}
			b++
		}
		b = min(b, eol)
		next = min(b+1, eol)
	case '\'':
		a = v + 1
		b = a
		for b < eol {
			if s[b] == '\'' {
				if b+1 < eol && s[b+1] == '\'' {
					b += 2
					continue
				}
				break
			}
			b++
		}
		next = min(b+1, eol)
	case '[':
		end := strings.IndexByte(line[:min(len(line), 4096)], ']')
		if end < 0 || strings.ContainsAny(line[1:end], "[{") {
			return nil, v
		}
		a, b, next = v+1, v+end, v+end+1
	case '{':
		return nil, v
	default:
		if kind == keyAuthorization {
			if c := skipScheme(s, v, eol); isPlaceholderPrefix(s[c:eol]) {
				return nil, c
			}
		}
		if isPlaceholderPrefix(line) {
			return nil, v
		}
		if sep == ':' && atLineStart {
			val := strings.TrimRight(line, " \t\r")
			if blockIndicator.MatchString(val) {
				return yamlScalarBlock(s, eol, keyCol), eol
			}
			if i := strings.Index(val, " #"); i >= 0 {
				val = strings.TrimRight(val[:i], " \t")
			}
			if jsonKey {
				val = strings.TrimSuffix(val, ",")
			}
			a, b, next = v, v+len(val), eol
		} else {
			b = v
			if kind == keyAuthorization {
				b = skipScheme(s, v, eol)
			}
			for b < eol && !strings.ContainsRune(" \t\r,;&\"'<>(){}[]", rune(s[b])) {
				b++
			}
			a, next = v, b
		}
	}
	if kind == keyAuthorization {
		a = skipScheme(s, a, b)
	}
	if a >= b || isPlaceholder(s[a:b]) {
		return nil, max(next, v)
	}
	return []span{{a, b}}, next
}

// skipScheme skips an authorization scheme word and the blanks after it
// ("Bearer ", "Basic ") when a credential follows; it returns where the
// credential starts.
func skipScheme(s string, a, end int) int {
	i := a
	for i < end && (isWordByte(s[i]) || s[i] == '-' || s[i] == '_') {
		i++
	}
	j := i
	for j < end && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	if i > a && j > i && j < end {
		return j
	}
	return a
}

// lineIndent returns a line's indentation and its text after it.
func lineIndent(line string) (int, string) {
	t := strings.TrimLeft(line, " \t")
	return len(line) - len(t), t
}

// yamlScalarBlock returns the span of a block scalar's lines (the lines
// after from that are indented deeper than keyCol, blank lines included).
func yamlScalarBlock(s string, from, keyCol int) []span {
	start, end := -1, -1
	for p := from; p < len(s); {
		p++ // past the newline
		e := strings.IndexByte(s[p:], '\n')
		if e < 0 {
			e = len(s)
		} else {
			e += p
		}
		ind, text := lineIndent(strings.TrimRight(s[p:e], "\r"))
		if text != "" {
			if ind <= keyCol {
				break
			}
			if start < 0 {
				start = p + ind
			}
			end = p + ind + len(text)
		}
		p = e
	}
	if start < 0 {
		return nil
	}
	return []span{{start, end}}
}

// yamlListBlock returns the spans of scalar list items ("- value") under a
// key whose value is empty on its own line; nested mappings are left to the
// key scan.
func yamlListBlock(s string, from, keyCol int) []span {
	var spans []span
	for p := from; p < len(s); {
		p++
		e := strings.IndexByte(s[p:], '\n')
		if e < 0 {
			e = len(s)
		} else {
			e += p
		}
		ind, text := lineIndent(strings.TrimRight(s[p:e], "\r"))
		if text != "" {
			if ind < keyCol || !strings.HasPrefix(text, "- ") {
				break
			}
			item := strings.TrimSpace(text[2:])
			if item != "" && !mappingItem.MatchString(item) && !isPlaceholder(item) {
				a := p + ind + 2 + (len(text[2:]) - len(strings.TrimLeft(text[2:], " \t")))
				spans = append(spans, span{a, a + len(item)})
			}
		}
		p = e
	}
	return spans
}
