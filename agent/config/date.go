package config

import (
	"encoding/json"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// dateLayout is the only accepted form of a Date.
const dateLayout = "2006-01-02"

// Date is a calendar day (YYYY-MM-DD) such as a contract expiry. The
// embedded time is midnight UTC of that day; the zero Date means "not set".
type Date struct{ time.Time }

// ParseDate parses a day written exactly as YYYY-MM-DD.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		return Date{}, fmt.Errorf("%q is not a date; use YYYY-MM-DD, e.g. 2027-06-30", s)
	}
	return Date{t}, nil
}

// DateOf returns the calendar day of t in t's own location; compare a
// holiday with DateOf(t.In(officeLocation)).
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{time.Date(y, m, d, 0, 0, 0, 0, time.UTC)}
}

// String returns YYYY-MM-DD, or "" for the zero Date.
func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	return d.Time.Format(dateLayout)
}

// UnmarshalYAML accepts a scalar written as YYYY-MM-DD. A bad value becomes a
// *yaml.TypeError so that decoding goes on and reports every error of the file.
func (d *Date) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf("line %d: cannot unmarshal %s into config.Date", n.Line, n.ShortTag())}}
	}
	v, err := ParseDate(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf("line %d: cannot unmarshal %s `%s` into config.Date", n.Line, n.ShortTag(), n.Value)}}
	}
	*d = v
	return nil
}

// MarshalYAML writes the day as a plain YYYY-MM-DD scalar (null when zero).
func (d Date) MarshalYAML() (any, error) {
	if d.IsZero() {
		return nil, nil
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!timestamp", Value: d.String()}, nil
}

// MarshalJSON writes "YYYY-MM-DD" (null when zero).
func (d Date) MarshalJSON() ([]byte, error) {
	if d.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(d.String())
}

// UnmarshalJSON reads "YYYY-MM-DD" or null.
func (d *Date) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*d = Date{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("date: %w", err)
	}
	v, err := ParseDate(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText writes YYYY-MM-DD ("" when zero).
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads YYYY-MM-DD; empty text gives the zero Date.
func (d *Date) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Date{}
		return nil
	}
	v, err := ParseDate(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
