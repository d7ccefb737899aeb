package config

import (
	"encoding/json"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseDate(t *testing.T) {
	t.Parallel()
	d, err := ParseDate("2027-06-30")
	if err != nil || !d.Time.Equal(time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)) || d.String() != "2027-06-30" {
		t.Errorf("ParseDate = %v, %v", d, err)
	}
	for _, bad := range []string{"", "2027-6-30", "30/06/2027", "2027-02-30", "2027-06-30T00:00:00Z", "2027-06-30 "} {
		if _, err := ParseDate(bad); err == nil {
			t.Errorf("ParseDate(%q) accepted", bad)
		}
	}
	if got := DateOf(time.Date(2026, 12, 25, 23, 30, 0, 0, time.FixedZone("HKT", 8*3600))); got.String() != "2026-12-25" {
		t.Errorf("DateOf = %s, want the local day 2026-12-25", got)
	}
}

func TestDateEncodings(t *testing.T) {
	t.Parallel()
	type doc struct {
		D Date `yaml:"d" json:"d"`
		Z Date `yaml:"z" json:"z"`
	}
	in := doc{D: Date{time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)}}
	y, err := yaml.Marshal(in)
	if err != nil || string(y) != "d: 2027-06-30\nz: null\n" {
		t.Errorf("yaml = %q, %v", y, err)
	}
	var back doc
	if err := yaml.Unmarshal(y, &back); err != nil || back != in {
		t.Errorf("yaml round trip = %+v, %v", back, err)
	}
	if err := yaml.Unmarshal([]byte(`d: "2027-06-30"`), &back); err != nil || back.D != in.D {
		t.Errorf("quoted date = %+v, %v", back, err)
	}
	j, err := json.Marshal(in)
	if err != nil || string(j) != `{"d":"2027-06-30","z":null}` {
		t.Errorf("json = %s, %v", j, err)
	}
	back = doc{}
	if err := json.Unmarshal(j, &back); err != nil || back != in {
		t.Errorf("json round trip = %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"d":"2027-06-30T10:00:00Z"}`), &back); err == nil {
		t.Error("json accepted a timestamp as a date")
	}
	if err := yaml.Unmarshal([]byte("d: [1]"), &back); err == nil {
		t.Error("yaml accepted a list as a date")
	}
}
