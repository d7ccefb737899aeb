package bundle

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Redacted is what every redacted value is replaced with.
const Redacted = "<redacted>"

// Redaction rule names, as manifest.json reports them. Patterns from
// diagnostics.redact are reported as "redact[i]", i their index in the list
// (never the pattern itself).
const (
	// RulePrivateKey: PEM private key blocks (RSA, EC, PKCS#8, encrypted,
	// OpenSSH, PGP); the BEGIN/END lines stay, the body goes.
	RulePrivateKey = "pem-private-key"
	// RuleKnownSecret: the values in Input.Secrets and their encoded forms
	// (base64 standard/URL, padded or not, also inside longer base64; hex;
	// JSON- and URL-escaped).
	RuleKnownSecret = "known-secret"
	// RuleBearer: the credential after "Bearer ".
	RuleBearer = "bearer-token"
	// RuleAssignment: the value of a secret-named key (pin, password, passwd,
	// pass, passphrase, secret, token, credential(s), cookie, api_key and the
	// like, authorization) written as YAML, JSON, env, header or key=value.
	RuleAssignment = "secret-assignment"
	// RuleFlag: the value after a secret-named command-line flag ("--pin 1234").
	RuleFlag = "secret-flag"
	// RuleURLCredentials: the password in a URL's user info
	// ("https://user:PASSWORD@host").
	RuleURLCredentials = "url-credentials"
)

// minEncodedSecret is the shortest secret whose encoded forms are scrubbed
// too; shorter ones are scrubbed in their plain form only (their encodings
// would be too short to tell from other text).
const minEncodedSecret = 4

// minAnywhere is the length from which a secret form is scrubbed wherever it
// occurs, even inside a longer word; shorter forms only where they stand
// alone (no ASCII letter or digit directly before or after).
const minAnywhere = 8

// redactor holds the compiled rules of one bundle.
type redactor struct {
	forms   []string // known-secret forms, longest first
	exact   map[string]bool
	protect []string // values never redacted by known-secret or configured rules
	custom  []customRule
}

type customRule struct {
	name string
	re   *regexp.Regexp
}

// newRedactor compiles the rules. patterns are diagnostics.redact; protect
// are values that must survive (serial, device name, firmware...) unless
// they are themselves a secret.
func newRedactor(secrets []string, patterns []string, protect []string) (*redactor, error) {
	r := &redactor{exact: map[string]bool{}}
	for i, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("diagnostics.redact[%d] %q is not a valid regular expression (Go RE2 syntax): %w", i, p, err)
		}
		r.custom = append(r.custom, customRule{name: fmt.Sprintf("redact[%d]", i), re: re})
	}
	seen := map[string]bool{}
	for _, s := range secrets {
		for _, f := range secretForms(s) {
			if f != "" && !seen[f] {
				seen[f] = true
				r.forms = append(r.forms, f)
			}
		}
		r.exact[s] = true
		r.exact[strings.TrimSpace(s)] = true
	}
	sort.Slice(r.forms, func(i, j int) bool { return len(r.forms[i]) > len(r.forms[j]) })
	for _, p := range protect {
		if len(p) >= 2 && !r.exact[p] && !slices.Contains(r.protect, p) {
			r.protect = append(r.protect, p)
		}
	}
	return r, nil
}

// ruleNames lists the rules in the order they run.
func (r *redactor) ruleNames() []string {
	names := []string{RulePrivateKey, RuleKnownSecret, RuleBearer, RuleURLCredentials, RuleFlag, RuleAssignment}
	for _, c := range r.custom {
		names = append(names, c.name)
	}
	return names
}

// apply redacts text with every rule and counts the replacements by rule.
func (r *redactor) apply(text []byte) ([]byte, map[string]int) {
	counts := map[string]int{}
	s := string(text)
	var n int
	s, n = redactPEM(s)
	counts[RulePrivateKey] += n
	s, n = r.redactKnown(s)
	counts[RuleKnownSecret] += n
	s = redactLineRules(s, counts)
	s, n = redactAssignments(s)
	counts[RuleAssignment] += n
	for _, c := range r.custom {
		s, n = redactGroups(s, c.re, r.protect)
		counts[c.name] += n
	}
	for k, v := range counts {
		if v == 0 {
			delete(counts, k)
		}
	}
	return []byte(s), counts
}

// scrub applies every rule to a short string (free text that goes into the
// manifest, such as a command's error).
func (r *redactor) scrub(s string) string {
	b, _ := r.apply([]byte(s))
	return string(b)
}

// secretForms returns a secret and the ways it may be written elsewhere:
// trimmed, JSON- and URL-escaped, base64 (standard and URL alphabets, with
// and without padding, and the stable middle of its encoding inside a
// longer base64 string at each of the three byte alignments) and hex.
func secretForms(s string) []string {
	if s == "" {
		return nil
	}
	forms := []string{s}
	if t := strings.TrimSpace(s); t != "" && t != s {
		forms = append(forms, t)
	}
	if len(s) < minEncodedSecret {
		return forms
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	forms = append(forms, strings.TrimSuffix(strings.TrimSpace(b.String()), `"`)[1:])
	if j, err := json.Marshal(s); err == nil {
		forms = append(forms, string(j[1:len(j)-1]))
	}
	forms = append(forms, url.QueryEscape(s), url.PathEscape(s))
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		forms = append(forms, e.EncodeToString([]byte(s)))
	}
	for _, e := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		for k := range 3 {
			if c := base64Core(e, s, k); len(c) >= minAnywhere {
				forms = append(forms, c)
			}
		}
	}
	h := hex.EncodeToString([]byte(s))
	return append(forms, h, strings.ToUpper(h))
}

// base64Core returns the characters of the base64 encoding of s that do not
// depend on its neighbours when s starts k bytes (mod 3) into a longer
// encoded string.
func base64Core(e *base64.Encoding, s string, k int) string {
	enc := e.EncodeToString(append(make([]byte, k), s...))
	start := (8*k + 5) / 6        // first character made of s's bits only
	end := (8 * (k + len(s))) / 6 // characters that end within s
	if end <= start {
		return ""
	}
	return enc[start:end]
}

func isWordByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

type span struct{ start, end int }

// redactKnown replaces every occurrence of a known secret form. Forms shorter
// than minAnywhere must stand alone; an occurrence inside a protected value
// (a serial number, say) is left alone.
func (r *redactor) redactKnown(s string) (string, int) {
	if len(r.forms) == 0 {
		return s, 0
	}
	var spans []span
	for _, f := range r.forms {
		for from := 0; ; {
			i := strings.Index(s[from:], f)
			if i < 0 {
				break
			}
			a, b := from+i, from+i+len(f)
			from = a + 1
			if len(f) < minAnywhere {
				if isWordByte(f[0]) && a > 0 && isWordByte(s[a-1]) {
					continue
				}
				if isWordByte(f[len(f)-1]) && b < len(s) && isWordByte(s[b]) {
					continue
				}
			}
			spans = append(spans, span{a, b})
		}
	}
	spans = dropProtected(s, mergeSpans(spans), r.protect)
	return replaceSpans(s, spans), len(spans)
}

// mergeSpans sorts spans and joins the ones that overlap or touch.
func mergeSpans(spans []span) []span {
	if len(spans) == 0 {
		return nil
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	out := []span{spans[0]}
	for _, sp := range spans[1:] {
		last := &out[len(out)-1]
		if sp.start <= last.end {
			last.end = max(last.end, sp.end)
			continue
		}
		out = append(out, sp)
	}
	return out
}

// dropProtected removes the spans that lie inside an occurrence of a
// protected value.
func dropProtected(s string, spans []span, protect []string) []span {
	if len(spans) == 0 || len(protect) == 0 {
		return spans
	}
	var prot []span
	for _, p := range protect {
		for from := 0; ; {
			i := strings.Index(s[from:], p)
			if i < 0 {
				break
			}
			prot = append(prot, span{from + i, from + i + len(p)})
			from += i + 1
		}
	}
	if len(prot) == 0 {
		return spans
	}
	// spans are sorted; sort the occurrences too and sweep: a span is inside
	// some occurrence when the farthest end among the occurrences starting at
	// or before it reaches its end.
	sort.Slice(prot, func(i, j int) bool { return prot[i].start < prot[j].start })
	out := spans[:0]
	i, reach := 0, -1
	for _, sp := range spans {
		for i < len(prot) && prot[i].start <= sp.start {
			reach = max(reach, prot[i].end)
			i++
		}
		if reach < sp.end {
			out = append(out, sp)
		}
	}
	return out
}

// replaceSpans replaces sorted, disjoint spans of s with Redacted.
func replaceSpans(s string, spans []span) string {
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp.start])
		b.WriteString(Redacted)
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String()
}

// pemRe matches a PEM private key block; an unterminated one (a cut file)
// runs to the end of the text.
var pemRe = regexp.MustCompile(`(-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----)(?s:.*?)(-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z)`)

func redactPEM(s string) (string, int) {
	n := 0
	out := pemRe.ReplaceAllStringFunc(s, func(m string) string {
		sm := pemRe.FindStringSubmatch(m)
		n++
		end := sm[3]
		if end == "" {
			end = "-----END " + sm[2] + "-----"
		}
		return sm[1] + "\n" + Redacted + "\n" + end
	})
	return out, n
}

// bearerRe matches a bearer credential; the group is replaced.
var bearerRe = regexp.MustCompile(`(?i)\bbearer[ \t]+([A-Za-z0-9\-._~+/]{8,}=*)`)

// urlCredRe matches the password of a URL's user info (group 1).
var urlCredRe = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.\-]*://[^/\s:@]*:([^/\s@<]+)@`)

// flagRe matches a secret-named command-line flag and its value (group 1).
var flagRe = regexp.MustCompile(`(?i)(?:^|[\s"'])--?(?:[a-z0-9]+-)*(?:pin|password|passwd|passphrase|secret|token|api-key|apikey)[ \t]+([^\s"'\-<][^\s"']*)`)

// lineRule is a rule run only on the lines that hold one of its anchors
// (lower case); Go's regexp is slow on patterns without a literal prefix.
type lineRule struct {
	name    string
	re      *regexp.Regexp
	anchors []string
}

var lineRules = []lineRule{
	{RuleBearer, bearerRe, []string{"bearer"}},
	{RuleURLCredentials, urlCredRe, []string{"://"}},
	{RuleFlag, flagRe, []string{"-pin", "-pass", "-secret", "-token", "-api"}},
}

// redactLineRules applies the line rules to the lines that may need them.
func redactLineRules(s string, counts map[string]int) string {
	low := asciiLower(make([]byte, 0, len(s)), s)
	var lines []span
	for _, r := range lineRules {
		for _, a := range r.anchors {
			for from := 0; from < len(low); {
				i := bytes.Index(low[from:], []byte(a))
				if i < 0 {
					break
				}
				p := from + i
				// from is always a line start, so the search back stays on p's line.
				ls := bytes.LastIndexByte(low[from:p], '\n') + 1 + from
				le := bytes.IndexByte(low[p:], '\n')
				if le < 0 {
					le = len(low)
				} else {
					le += p
				}
				lines = append(lines, span{ls, le})
				from = le + 1
			}
		}
	}
	if len(lines) == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for _, l := range mergeSpans(lines) {
		line := s[l.start:l.end]
		for _, r := range lineRules {
			var n int
			line, n = redactGroups(line, r.re, nil)
			counts[r.name] += n
		}
		b.WriteString(s[last:l.start])
		b.WriteString(line)
		last = l.end
	}
	b.WriteString(s[last:])
	return b.String()
}

// redactGroups replaces what re matches: the capture groups when it has
// any, else the whole match. Matches inside a protected value are kept.
func redactGroups(s string, re *regexp.Regexp, protect []string) (string, int) {
	all := re.FindAllStringSubmatchIndex(s, -1)
	if len(all) == 0 {
		return s, 0
	}
	var spans []span
	for _, m := range all {
		if re.NumSubexp() == 0 {
			if m[1] > m[0] {
				spans = append(spans, span{m[0], m[1]})
			}
			continue
		}
		for g := 1; g <= re.NumSubexp(); g++ {
			a, b := m[2*g], m[2*g+1]
			if a >= 0 && b > a && s[a:b] != Redacted {
				spans = append(spans, span{a, b})
			}
		}
	}
	spans = dropProtected(s, mergeSpans(spans), protect)
	return replaceSpans(s, spans), len(spans)
}

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
