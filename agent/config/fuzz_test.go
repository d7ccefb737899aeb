package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse feeds arbitrary bytes to the loader (Parse is Load without the
// read). Properties: it never panics; a file it accepts has no field the
// configuration types do not declare, at any depth (unknown fields are
// always refused); and Redacted renders every accepted configuration
// without the values of secret-named module environment variables or
// the password of a desk URL. The seeds are the testdata files and
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yml"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yml")
		if err != nil {
			return
		}
		var root yaml.Node
		if yaml.Unmarshal(data, &root) == nil && len(root.Content) > 0 {
			if bad := unknownKeys(root.Content[0], reflect.TypeFor[Config](), ""); bad != "" {
				t.Fatalf("Parse accepted the unknown field %s in:\n%s", bad, data)
			}
		}
		planted := plantSecrets(c)
		out, err := c.Redacted()
		if err != nil {
			t.Fatalf("Redacted of an accepted config: %v", err)
		}
		for _, s := range planted {
			if strings.Contains(string(out), s) {
				t.Fatalf("Redacted output holds the planted secret %q:\n%s", s, out)
			}
		}
	})
}

// plantSecrets puts a unique marker into every secret-named module env
// variable and into the password of every desk URL with user info, and
// returns the markers.
func plantSecrets(c *Config) []string {
	var planted []string
	for i := range c.Modules {
		for k := range c.Modules[i].Env {
			if sensitiveEnv.MatchString(k) {
				s := fmt.Sprintf("PLANTED-ENV-%d-%d-zq", i, len(planted))
				c.Modules[i].Env[k] = s
				planted = append(planted, s)
			}
		}
	}
	for i := range c.Desks {
		if scheme, rest, ok := strings.Cut(c.Desks[i].URL, "://"); ok {
			if user, host, ok := strings.Cut(rest, "@"); ok && !strings.ContainsAny(user, "/?#") {
				name, _, _ := strings.Cut(user, ":")
				s := fmt.Sprintf("PLANTEDPW%dzq", i)
				u := scheme + "://" + name + ":" + s + "@" + host
				if _, err := url.Parse(u); err == nil { // what validation lets through
					c.Desks[i].URL = u
					planted = append(planted, s)
				}
			}
		}
	}
	return planted
}

// unknownKeys returns the path of the first mapping key in n that type t
// does not declare ("" if none), following structs, slices, maps and
// pointers; types with their own UnmarshalYAML are not entered.
func unknownKeys(n *yaml.Node, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		return ""
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			f, ok := fieldByYAMLName(t, key)
			if !ok || !slices.Contains(yamlFields(t), key) {
				return path + "." + key
			}
			if bad := unknownKeys(n.Content[i+1], f.Type, path+"."+key); bad != "" {
				return bad
			}
		}
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && n.Kind == yaml.SequenceNode:
		for i, e := range n.Content {
			if bad := unknownKeys(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); bad != "" {
				return bad
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if bad := unknownKeys(n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value); bad != "" {
				return bad
			}
		}
	}
	return ""
}

// FuzzRedacted renders a valid configuration whose module environment and
// desk URL carry fuzzed values. Properties: no panic, no error; a value of
// a secret-named variable (PIN, PASS, SECRET, TOKEN, KEY, CRED, AUTH) never
// appears in the output, nor does the password of the desk URL's user
// info. Each planted value starts with a marker that must not appear at
// all.
func FuzzRedacted(f *testing.F) {
	f.Add("SOFTHSM2_PIN", "1234", "https://u:pw@desk.example/hook")
	f.Add("VENDOR_API_KEY", "k\n: [x]", "http://desk.example:8080/h?sig=abc")
	f.Add("MY_TOKEN", "'quoted' \"and\" #comment", "https://:only-pass@desk.example")
	f.Add("auth", "", "https://user@desk.example")
	f.Fuzz(func(t *testing.T, key, value, deskURL string) {
		const marker = "Zq9Mk"
		c := Default()
		var planted []string
		envValue := "plain" + value
		if sensitiveEnv.MatchString(key) {
			envValue = marker + value
			planted = append(planted, envValue)
		}
		c.Modules = []Module{{Name: "soft", Library: "/usr/lib/softhsm/libsofthsm2.so", Env: map[string]string{key: envValue}}}
		u, err := url.Parse(deskURL)
		if err != nil {
			return // the loader refuses it (desks[].url must parse)
		}
		if u.User != nil {
			if pw, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), marker+"PW"+pw)
				planted = append(planted, marker+"PW"+pw)
				deskURL = u.String()
			}
		}
		c.Desks = []Desk{{Name: "vendor", Type: DeskWebhook, Role: RoleVendor, URL: deskURL}}
		out, err := c.Redacted()
		if err != nil {
			t.Fatalf("Redacted: %v", err)
		}
		for _, p := range planted {
			if strings.Contains(string(out), p) || strings.Contains(string(out), marker) {
				t.Fatalf("Redacted output holds the planted %q:\n%s", p, out)
			}
		}
	})
}
