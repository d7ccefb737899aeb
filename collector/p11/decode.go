package p11

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Printable returns s without what must not reach a terminal, a log line,
// a ticket or a metric label: control characters (C0, DEL, C1), format
// characters (bidi overrides and isolates, zero-width marks) and every
// other non-printable rune; invalid UTF-8 becomes U+FFFD. Leading and
// trailing spaces are trimmed. Every string a token reports about itself
// (serial, label, model, manufacturer) passes through it once, when the
// parent decodes the worker's events (ParseEvent).
func Printable(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			plain = false
			break
		}
	}
	if plain {
		return strings.TrimSpace(s)
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, strings.ToValidUTF8(s, "\uFFFD"))
	return strings.TrimSpace(s)
}

// printableToken applies Printable to the strings a token reports.
func printableToken(t *Token) {
	t.Serial = Printable(t.Serial)
	t.Label = Printable(t.Label)
	t.Model = Printable(t.Model)
	t.Manufacturer = Printable(t.Manufacturer)
	t.Firmware = Printable(t.Firmware)
	t.Hardware = Printable(t.Hardware)
}

// tokenPrefix starts every token event the worker writes.
var tokenPrefix = []byte(`{"t":"token"`)

// parseTokenEvent is a hand-written decoder for token events, the bulk of
// a worker's output (encoding/json was most of the parent's CPU in a warm
// poll). It accepts any JSON layout of the known keys and reports ok=false
// for anything else (an unknown key, invalid UTF-8, bad syntax), so that
// the caller falls back to encoding/json.
func parseTokenEvent(line []byte) (ev WorkerEvent, ok bool) {
	d := decoder{b: line}
	ok = d.object(func(key []byte) bool {
		switch string(key) {
		case "t":
			ev.Type, ok = d.str()
			return ok
		case "slot":
			var n uint64
			n, ok = d.uint()
			ev.Slot = uint(n)
			return ok
		case "token":
			ev.Token = new(Token)
			return d.token(ev.Token)
		}
		return false
	})
	return ev, ok && d.end() && ev.Type != ""
}

type decoder struct {
	b []byte
	i int
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) end() bool {
	d.ws()
	return d.i == len(d.b)
}

func (d *decoder) consume(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object reads {"key": value, ...}, calling field for each key with the
// decoder positioned at the value.
func (d *decoder) object(field func(key []byte) bool) bool {
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	for {
		d.ws()
		key, ok := d.rawKey()
		if !ok || !d.consume(':') {
			return false
		}
		d.ws()
		if !field(key) {
			return false
		}
		if d.consume(',') {
			continue
		}
		return d.consume('}')
	}
}

// array reads [v, ...], calling elem for each element.
func (d *decoder) array(elem func() bool) bool {
	if !d.consume('[') {
		return false
	}
	if d.consume(']') {
		return true
	}
	for {
		d.ws()
		if !elem() {
			return false
		}
		if d.consume(',') {
			continue
		}
		return d.consume(']')
	}
}

// rawKey reads a key without escapes (all of ours).
func (d *decoder) rawKey() ([]byte, bool) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false
	}
	for j := d.i + 1; j < len(d.b); j++ {
		switch d.b[j] {
		case '\\':
			return nil, false
		case '"':
			k := d.b[d.i+1 : j]
			d.i = j + 1
			return k, true
		}
	}
	return nil, false
}

func (d *decoder) str() (string, bool) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return "", false
	}
	start := d.i + 1
	j := start
	high := false
	for ; j < len(d.b); j++ {
		c := d.b[j]
		if c == '"' {
			s := d.b[start:j]
			if high && !utf8.Valid(s) {
				return "", false
			}
			d.i = j + 1
			return string(s), true
		}
		if c == '\\' {
			return d.escapedStr(start)
		}
		if c < 0x20 {
			return "", false
		}
		if c >= utf8.RuneSelf {
			high = true
		}
	}
	return "", false
}

// escapedStr decodes a string with escapes starting at b[start].
func (d *decoder) escapedStr(start int) (string, bool) {
	out := make([]byte, 0, 64)
	j := start
	for j < len(d.b) {
		c := d.b[j]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return "", false
			}
			d.i = j + 1
			return string(out), true
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			j++
			continue
		}
		if j+1 >= len(d.b) {
			return "", false
		}
		e := d.b[j+1]
		j += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(d.b, j)
			if !ok {
				return "", false
			}
			j += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if j+6 <= len(d.b) && d.b[j] == '\\' && d.b[j+1] == 'u' {
					r2, ok = hex4(d.b, j+2)
				}
				if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
					j += 6
					r = dec
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
	}
	return "", false
}

func hex4(b []byte, j int) (rune, bool) {
	if j+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[j : j+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func (d *decoder) number() ([]byte, bool) {
	d.ws()
	s := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	if d.i == digits || (d.b[digits] == '0' && d.i > digits+1) {
		return nil, false // no digits, or a leading zero (not JSON)
	}
	return d.b[s:d.i], true
}

func (d *decoder) uint() (uint64, bool) {
	n, ok := d.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(string(n), 10, 64)
	return v, err == nil && (strconv.IntSize == 64 || v <= math.MaxUint32)
}

func (d *decoder) int() (int64, bool) {
	n, ok := d.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	return v, err == nil
}

func (d *decoder) boolean() (bool, bool) {
	d.ws()
	switch {
	case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		d.i += 4
		return true, true
	case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		d.i += 5
		return false, true
	}
	return false, false
}

func (d *decoder) token(t *Token) bool {
	return d.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "slot_id":
			var n uint64
			n, ok = d.uint()
			t.SlotID = uint(n)
		case "serial":
			t.Serial, ok = d.str()
		case "label":
			t.Label, ok = d.str()
		case "model":
			t.Model, ok = d.str()
		case "manufacturer":
			t.Manufacturer, ok = d.str()
		case "firmware":
			t.Firmware, ok = d.str()
		case "hardware":
			t.Hardware, ok = d.str()
		case "flags":
			t.Flags = make([]string, 0, 8)
			ok = d.array(func() bool {
				s, ok := d.str()
				t.Flags = append(t.Flags, s)
				return ok
			})
		case "checks":
			t.Checks = make([]Check, 0, 4)
			ok = d.array(func() bool {
				var c Check
				ok := d.check(&c)
				t.Checks = append(t.Checks, c)
				return ok
			})
		}
		return ok
	})
}

func (d *decoder) check(c *Check) bool {
	return d.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "name":
			c.Name, ok = d.str()
		case "ok":
			c.OK, ok = d.boolean()
		case "duration_ns":
			var n int64
			n, ok = d.int()
			c.Duration = time.Duration(n)
		case "error":
			c.Error, ok = d.str()
		case "not_run":
			c.NotRun, ok = d.str()
		}
		return ok
	})
}
