package config

import (
	"bytes"
	"fmt"
	"net/url"
	"regexp"

	"go.yaml.in/yaml/v3"
)

// RedactURL is what of a desk URL may appear outside the configuration
// (bundles, logs, errors): its scheme and host. Paths and queries of
// webhook URLs often carry the credential itself (/hook/<token>, ?sig=,
// ?code=), and user info a password. A URL that does not parse gives "".
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}

// SensitiveEnv reports whether a module environment variable's name
// suggests it holds a secret (PIN, PASSWORD, TOKEN, KEY, ...).
func SensitiveEnv(name string) bool { return sensitiveEnv.MatchString(name) }

// Redacted renders the effective configuration (defaults included) as YAML
// for diagnostics bundles. The configuration holds secrets only by file
// path; module environment variables whose names suggest a secret (PIN,
// PASSWORD, TOKEN, ...) print as <secret> and desk URLs as their scheme and
// host (RedactURL).
func (c *Config) Redacted() ([]byte, error) {
	r := *c
	r.Modules = make([]Module, len(c.Modules))
	for i, m := range c.Modules {
		if m.Env != nil {
			env := make(map[string]string, len(m.Env))
			for k, v := range m.Env {
				if sensitiveEnv.MatchString(k) {
					v = redacted
				}
				env[k] = v
			}
			m.Env = env
		}
		r.Modules[i] = m
	}
	r.Desks = make([]Desk, len(c.Desks))
	for i, d := range c.Desks {
		if d.URL != "" {
			d.URL = RedactURL(d.URL)
		}
		r.Desks[i] = d
	}
	var n yaml.Node
	if err := n.Encode(&r); err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	prune(&n)
	var b bytes.Buffer
	b.WriteString("# hsm-agent effective configuration")
	if c.File != "" {
		b.WriteString(", loaded from " + c.File)
	}
	b.WriteString("; secrets redacted\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	return b.Bytes(), nil
}

// prune drops settings left empty ("", null, {} or []) from a mapping tree
// and reports whether n itself is empty.
func prune(n *yaml.Node) bool {
	switch n.Kind {
	case yaml.MappingNode:
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !prune(n.Content[i+1]) {
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = kept
		return len(kept) == 0
	case yaml.SequenceNode:
		for _, item := range n.Content {
			prune(item)
		}
		return len(n.Content) == 0
	case yaml.ScalarNode:
		return n.ShortTag() == "!!null" || (n.ShortTag() == "!!str" && n.Value == "")
	}
	return false
}

// sensitiveEnv matches module environment variables that may hold secrets.
var sensitiveEnv = regexp.MustCompile(`(?i)PIN|PASS|SECRET|TOKEN|KEY|CRED|AUTH`)
