package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads, strictly decodes, defaults and validates the configuration file
// at path. Files the configuration names (libraries, PIN files) need not exist:
// see CheckFiles. The error lists every problem of the file, one per line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse is Load for data already read; file names it in errors.
//
// Decoding is strict (an unknown field is an error) and goes into plain
// structs: no UnmarshalYAML that calls node.Decode, which would silently
// drop the unknown-field check. Settings the file leaves out keep Default's
// values; then the whole configuration is validated. Every problem found is
// returned at once, joined, each a *FieldError.
func Parse(data []byte, file string) (*Config, error) {
	// A first pass into a node tree finds syntax errors and the line of
	// every field, for messages about fields yaml does not report on.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(file, err)
	}
	if root.Kind == 0 || emptyDocument(&root) {
		return nil, &FieldError{File: file, Line: 1, Msg: errEmptyFile}
	}
	idx := indexNodes(&root)

	c := Default()
	c.File = file
	c.lines = idx.lines()

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var errs []*FieldError
	structural := false
	var te *yaml.TypeError
	switch err := dec.Decode(c); {
	case err == nil, errors.Is(err, io.EOF):
	case errors.As(err, &te):
		errs, structural = idx.translate(file, te)
	default:
		return nil, syntaxError(file, err)
	}
	for { // later documents must be empty
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxError(file, err)
		}
		if !emptyDocument(&next) {
			errs = append(errs, &FieldError{File: file, Line: next.Line,
				Msg: "a second YAML document starts here; put the whole configuration in one document"})
			break
		}
	}

	errs = append(errs, nullKeys(file, &root)...)
	c.listDefaults()

	// A mapping or list that failed to decode leaves the structs short (yaml
	// drops the element), so later paths would be wrong: report only the
	// decoding errors then. Otherwise validate too, skipping fields that
	// already have a decoding error.
	if !structural {
		for _, v := range c.validate() {
			if !covered(v.Path, errs) {
				errs = append(errs, v)
			}
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return c, nil
}

// errEmptyFile is the error of a file without settings. Defaults alone
// would run an agent that watches nothing, and a reload of such a file
// would silently drop every device.
const errEmptyFile = "the file is empty or holds only comments, so it configures nothing; " +
	"write the configuration into it (at least modules: and devices:, see the packaged /etc/hsm-agent/config.yml)"

// listDefaults sets the defaults of list items the file leaves out: a desk's
// upload policy (auto) and, for desk types that use it, its timeout; a
// diagnostics command's timeout. A value the file sets, even zero, is kept
// (and validated).
func (c *Config) listDefaults() {
	for i := range c.Desks {
		d := &c.Desks[i]
		if d.Upload == "" {
			d.Upload = UploadAuto
		}
		if d.Timeout == 0 && deskTypeUses(d.Type, "timeout") && !c.inFile(fmt.Sprintf("desks[%d].timeout", i)) {
			d.Timeout = DefaultDeskTimeout
		}
	}
	for i := range c.Diagnostics.Commands {
		cmd := &c.Diagnostics.Commands[i]
		if cmd.Timeout == 0 && !c.inFile(fmt.Sprintf("diagnostics.commands[%d].timeout", i)) {
			cmd.Timeout = DefaultCommandTimeout
		}
	}
}

// nullKeys reports every mapping key that is null ("~", "null" or
// nothing before the colon): yaml ignores such a key even with
// KnownFields, so it would pass silently as an unknown field.
func nullKeys(file string, n *yaml.Node) []*FieldError {
	var errs []*FieldError
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.ShortTag() == "!!null" {
				errs = append(errs, &FieldError{File: file, Line: k.Line,
					Msg: "a key here is empty or null (~, null); write the setting's name before the colon"})
			}
		}
	}
	for _, c := range n.Content {
		errs = append(errs, nullKeys(file, c)...)
	}
	return errs
}

// emptyDocument reports whether a document holds nothing (a stray "---").
func emptyDocument(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	return n.Kind == yaml.DocumentNode || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// covered reports whether path is, or is inside, a field of errs.
func covered(path string, errs []*FieldError) bool {
	for _, e := range errs {
		if path == e.Path || strings.HasPrefix(path, e.Path+".") || strings.HasPrefix(path, e.Path+"[") {
			return true
		}
	}
	return false
}

var reYAMLLine = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml parse error into a FieldError with its line.
// yaml.v3 reports the line where the enclosing block starts (or the one just
// above it), not the line of the mistake, so the message says "at or below".
func syntaxError(file string, err error) error {
	e := &FieldError{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: "), Err: err}
	if m := reYAMLLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "invalid YAML at or below this line: " + m[2]
	}
	return e
}

// entry is one node of the file with its field path.
type entry struct {
	path  string
	key   *yaml.Node // the mapping key; nil for list items and the root
	value *yaml.Node
}

func (e entry) line() int {
	if e.key != nil {
		return e.key.Line
	}
	return e.value.Line
}

// nodeIndex lists the file's nodes in document order.
type nodeIndex []entry

// indexNodes walks the node tree. Aliases are not followed (their fields get
// the line of the alias), which also keeps the walk linear.
func indexNodes(root *yaml.Node) nodeIndex {
	var idx nodeIndex
	var walk func(n *yaml.Node, path string, key *yaml.Node)
	walk = func(n *yaml.Node, path string, key *yaml.Node) {
		idx = append(idx, entry{path: path, key: key, value: n})
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				walk(n.Content[i+1], p, k)
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				walk(item, fmt.Sprintf("%s[%d]", path, i), nil)
			}
		}
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		walk(root.Content[0], "", nil)
	}
	return idx
}

// lines maps each path to its line (the first occurrence of a repeated key).
func (idx nodeIndex) lines() *lineTable {
	m := make(map[string]int, len(idx))
	for _, e := range idx {
		if _, ok := m[e.path]; !ok {
			m[e.path] = e.line()
		}
	}
	return &lineTable{byPath: m}
}

var (
	reNotFound = regexp.MustCompile(`(?s)^line (\d+): field (.*) not found in type (\S+)$`)
	reCannot   = regexp.MustCompile("(?s)^line (\\d+): cannot unmarshal (\\S+)(?: `(.*)`)? into (\\S+)$")
	reDupKey   = regexp.MustCompile(`(?s)^line (\d+): mapping key (".*") already defined at line (\d+)$`)
	reLine     = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
)

// translate maps yaml's type errors ("line 4: cannot unmarshal !!str `15x`
// into time.Duration") to FieldErrors with the field path and our own
// message. structural is true when a mapping or list could not be decoded.
func (idx nodeIndex) translate(file string, te *yaml.TypeError) (errs []*FieldError, structural bool) {
	used := map[int]bool{} // entries already blamed, for two errors on one line
	find := func(match func(entry) bool) (entry, bool) {
		for i, e := range idx {
			if !used[i] && match(e) {
				used[i] = true
				return e, true
			}
		}
		return entry{}, false
	}
	// isKey matches the entry whose key is name on line, in a struct of Go type parent.
	isKey := func(line int, name, parent string) func(entry) bool {
		return func(en entry) bool {
			return en.key != nil && en.key.Line == line && en.key.Value == name && typeName(parentPath(en.path)) == parent
		}
	}
	for _, s := range te.Errors {
		e := &FieldError{File: file, Msg: s}
		if m := reNotFound.FindStringSubmatch(s); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			name := m[2]
			if en, ok := find(isKey(e.Line, name, m[3])); ok {
				e.Path = en.path
			}
			e.Msg = unknownFieldMsg(name, m[3])
		} else if m := reCannot.FindStringSubmatch(s); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			tag, val, typ := m[2], m[3], m[4]
			en, ok := find(func(en entry) bool {
				return en.value.Line == e.Line && nodeMatches(en.value, tag, val) && typeName(en.path) == typ
			})
			got := "a value"
			if ok {
				e.Path, got = en.path, describe(en.value)
			}
			var s bool
			e.Msg, s = typeMsg(e.Path, typ, got)
			structural = structural || s
		} else if m := reDupKey.FindStringSubmatch(s); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			name, _ := strconv.Unquote(m[2])
			if en, ok := find(func(en entry) bool { return en.key != nil && en.key.Line == e.Line && en.key.Value == name }); ok {
				e.Path = en.path
			}
			e.Msg = fmt.Sprintf("set twice (first at line %s); keep one", m[3])
			structural = true
		} else if m := reLine.FindStringSubmatch(s); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = m[2]
			structural = true
		} else {
			structural = true
		}
		errs = append(errs, e)
	}
	return errs, structural
}

// nodeMatches reports whether n is the node a yaml type error describes by
// its tag and its value, which yaml shortens to 7 characters and "...".
func nodeMatches(n *yaml.Node, tag, val string) bool {
	switch tag {
	case "!!seq":
		return n.Kind == yaml.SequenceNode
	case "!!map":
		return n.Kind == yaml.MappingNode
	}
	if n.Kind != yaml.ScalarNode {
		return false
	}
	if n.Value == val {
		return true
	}
	short, ok := strings.CutSuffix(val, "...")
	return ok && len(n.Value) > 10 && strings.HasPrefix(n.Value, short)
}

// describe names what a node holds, for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return strconv.Quote(n.Value)
}

// typeMsg says what a field of Go type typ needs when given got.
func typeMsg(path, typ, got string) (msg string, structural bool) {
	switch {
	case typ == "time.Duration":
		example := DefaultPollInterval
		for _, d := range (&Config{}).durations() {
			if d.name == path {
				example = d.def
			}
		}
		switch {
		case strings.HasPrefix(path, "desks[") && strings.HasSuffix(path, ".timeout"):
			example = DefaultDeskTimeout
		case strings.HasPrefix(path, "diagnostics.commands[") && strings.HasSuffix(path, ".timeout"):
			example = DefaultCommandTimeout
		}
		return fmt.Sprintf("%s is not a valid duration; use a number and a unit (ms, s, m, h), e.g. %q",
			got, shortDuration(example)), false
	case typ == "config.Date":
		return got + " is not a date; use YYYY-MM-DD, e.g. 2027-06-30", false
	case typ == "int":
		return got + " is not a whole number", false
	case typ == "bool":
		return got + " is not a boolean; use true or false", false
	case typ == "string":
		return "expected a single value, got " + got, false
	case strings.HasPrefix(typ, "[]"):
		return "expected a list, got " + got, true
	case path == "":
		return "expected a mapping of settings at the top level, got " + got, true
	}
	return "expected a mapping, got " + got, true
}

// shortDuration formats d without zero units: "5m" rather than "5m0s".
func shortDuration(d fmt.Stringer) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// parentPath strips the last element of a field path.
func parentPath(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

// typeName returns the Go type a field path decodes into, named as yaml's
// errors name it ("time.Duration", "[]config.Device"), or "" if the path
// is not part of Config.
func typeName(path string) string {
	t := reflect.TypeFor[Config]()
	for path != "" {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if strings.HasPrefix(path, "[") {
			end := strings.IndexByte(path, ']')
			if end < 0 || t.Kind() != reflect.Slice {
				return ""
			}
			t, path = t.Elem(), path[end+1:]
			continue
		}
		path = strings.TrimPrefix(path, ".")
		name := path
		if i := strings.IndexAny(path, ".["); i >= 0 {
			name, path = path[:i], path[i:]
		} else {
			path = ""
		}
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := fieldByYAMLName(t, name)
			if !ok {
				return ""
			}
			t = f.Type
		default:
			return ""
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.String()
}

// fieldByYAMLName finds the struct field with the given yaml name.
func fieldByYAMLName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); f.IsExported() && tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// structTypes maps Go type names ("config.Device") to the struct types of
// the configuration, for listing a struct's fields.
var structTypes = func() map[string]reflect.Type {
	m := map[string]reflect.Type{}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || m[t.String()] != nil || t == reflect.TypeFor[Date]() {
			return
		}
		m[t.String()] = t
		for i := 0; i < t.NumField(); i++ {
			add(t.Field(i).Type)
		}
	}
	add(reflect.TypeFor[Config]())
	return m
}()

// yamlFields lists the YAML names of a struct's fields.
func yamlFields(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.IsExported() && name != "-" && name != "" {
			names = append(names, name)
		}
	}
	return names
}

// unknownFieldMsg suggests the closest field of typ, or lists them all.
func unknownFieldMsg(name, typ string) string {
	t, ok := structTypes[typ]
	if !ok {
		return fmt.Sprintf("unknown field %q", name)
	}
	fields := yamlFields(t)
	for _, f := range fields {
		if d := editDistance(name, f); d <= max(1, len(f)/3) {
			return fmt.Sprintf("unknown field %q; did you mean %q?", name, f)
		}
	}
	return fmt.Sprintf("unknown field %q; allowed here: %s", name, strings.Join(fields, ", "))
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// joinErrors sorts errs by line (errors without a line last) and joins them:
// Error() gives one problem per line.
func joinErrors(errs []*FieldError) error {
	sort.SliceStable(errs, func(i, j int) bool {
		li, lj := errs[i].Line, errs[j].Line
		return li != 0 && (lj == 0 || li < lj)
	})
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}
