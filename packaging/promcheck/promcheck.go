// Package promcheck checks hsm-agent's Prometheus assets (alert rules, Grafana
// dashboard) against the metric names the agent exports: it lists the metric
// names a PromQL expression uses, reads the allow-lists in
// packaging/prometheus/metric-names*.txt and finds allow-listed names missing
// from a live /metrics page.
package promcheck

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

var metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// ReadNameList reads an allow-list file: one metric name a line, blank lines
// and lines starting with '#' ignored.
func ReadNameList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("metric name list: %w", err)
	}
	defer f.Close()
	names, err := ParseNameList(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return names, nil
}

// ParseNameList parses an allow-list (see ReadNameList). A line that is not a
// valid metric name, or a name listed twice, is an error naming the line.
func ParseNameList(r io.Reader) ([]string, error) {
	var names []string
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !metricNameRE.MatchString(line) {
			return nil, fmt.Errorf("line %d: %q is not a metric name (one name a line, [a-zA-Z_:][a-zA-Z0-9_:]*)", n, line)
		}
		if first, dup := seen[line]; dup {
			return nil, fmt.Errorf("line %d: %s already listed on line %d", n, line, first)
		}
		seen[line] = n
		names = append(names, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return names, nil
}

// keywords are PromQL words that are never metric names when they stand
// outside label matchers: aggregations, binary operators and modifiers, and
// the special float literals.
var keywords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
	"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true,
	"quantile": true, "limitk": true, "limit_ratio": true,
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// labelListKeywords take a parenthesised list of label names.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// ExprMetricNames returns the sorted, distinct metric names a PromQL
// expression selects: bare selectors (`hsm_up{...}`) and `{__name__="..."}`
// matchers. Function, aggregation and keyword names, label names, strings,
// numbers, durations and Grafana variables ($var, ${var}) are not names.
// It checks only what it needs (balanced strings, braces and brackets); use
// promtool for full syntax checks.
func ExprMetricNames(expr string) ([]string, error) {
	found := map[string]bool{}
	s := expr
	i := 0
	next := func() byte { // next non-space byte at or after i, 0 at the end
		for j := i; j < len(s); j++ {
			if !isSpace(s[j]) {
				return s[j]
			}
		}
		return 0
	}
	for i < len(s) {
		c := s[i]
		switch {
		case isSpace(c):
			i++
		case c == '#': // comment to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{':
			end, err := skipMatchers(s, i)
			if err != nil {
				return nil, err
			}
			if err := nameMatchers(s[i+1:end-1], found); err != nil {
				return nil, fmt.Errorf("%w in %q", err, expr)
			}
			i = end
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed '[' at offset %d in %q", i, expr)
			}
			i += end + 1
		case c == '$': // Grafana variable: $name or ${name...}
			i++
			if i < len(s) && s[i] == '{' {
				end := strings.IndexByte(s[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unclosed '${' at offset %d in %q", i, expr)
				}
				i += end + 1
				continue
			}
			for i < len(s) && isIdent(s[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			word := s[start:i]
			lower := strings.ToLower(word)
			switch {
			case labelListKeywords[lower]:
				if next() == '(' {
					end := strings.IndexByte(s[i:], ')')
					if end < 0 {
						return nil, fmt.Errorf("unclosed label list after %q in %q", word, expr)
					}
					i += end + 1
				}
			case keywords[lower]:
			case next() == '(':
				// a function call; its arguments are scanned as they come
			default:
				found[word] = true
			}
		default:
			i++
		}
	}
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

var nameMatcherRE = regexp.MustCompile(`__name__\s*(=~|!=|!~|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`" + `)`)

// nameMatchers records `__name__="x"` matchers; a regex or negative name
// matcher is refused because the names it selects cannot be checked.
func nameMatchers(body string, found map[string]bool) error {
	for _, m := range nameMatcherRE.FindAllStringSubmatch(body, -1) {
		if m[1] != "=" {
			return fmt.Errorf("__name__%s matcher: only __name__=\"...\" can be checked against the metric list", m[1])
		}
		found[m[2][1:len(m[2])-1]] = true
	}
	return nil
}

// skipMatchers returns the offset just past the '}' closing the label
// matchers that open at s[i], skipping quoted label values.
func skipMatchers(s string, i int) (int, error) {
	for j := i + 1; j < len(s); {
		switch s[j] {
		case '}':
			return j + 1, nil
		case '"', '\'', '`':
			end, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = end
		default:
			j++
		}
	}
	return 0, fmt.Errorf("unclosed '{' at offset %d in %q", i, s)
}

func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string starting at offset %d in %q", i, s)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// MissingFromExposition returns the names that no sample of the exposition
// carries (a # TYPE line alone does not count: the series must exist).
func MissingFromExposition(r io.Reader, names []string) ([]string, error) {
	samples := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ \t")
		if end <= 0 || !metricNameRE.MatchString(line[:end]) {
			return nil, fmt.Errorf("exposition: cannot read sample line %q (is this a /metrics page?)", line)
		}
		samples[line[:end]] = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(samples) == 0 {
		return nil, errors.New("exposition: no samples at all (is this a /metrics page?)")
	}
	var missing []string
	for _, n := range names {
		if !samples[n] {
			missing = append(missing, n)
		}
	}
	return missing, nil
}
