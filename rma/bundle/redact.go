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
