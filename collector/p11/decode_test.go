package p11

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// decodeSeeds are token lines the fast decoder must agree on with
// encoding/json, or hand over to it.
var decodeSeeds = []string{
	`{"t":"token","slot":3,"token":{"slot_id":3,"serial":"abc","label":"l","model":"m","manufacturer":"x","firmware":"2.6","hardware":"2.6","flags":["rng"],"checks":[{"name":"token_info","ok":true,"duration_ns":27000}]}}`,
	` { "t" : "token" , "slot" : 0 , "token" : { "flags" : [ ] , "checks" : [ ] } } `,
	`{"t":"token","slot":1,"token":{"label":"esc \" \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00 \ud800 x","checks":[{"name":"random","ok":false,"duration_ns":-5,"error":"CKR_DEVICE_ERROR","not_run":"r"}]}}`,
	`{"t":"token","slot":1,"token":{"label":"ünï ✓"}}`,
	`{"t":"token","slot":1,"token":{"label":"bad` + "\xff" + `"}}`,
	`{"t":"token","slot":1,"token":{"extra":1}}`,
	`{"t":"token","slot":1.5}`,
	`{"t":"token","slot":-1}`,
	`{"t":"token","slot":18446744073709551616}`,
	`{"t":"token","slot":1,"token":{"slot_id":1}} trailing`,
	`{"t":"token","slot":1,"token":null}`,
	`{"t":"token","slot":1,"token":{"checks":[{"ok":tru}]}}`,
	`{"t":"token","slot":1,"token":{"label":"ctl` + "\x01" + `"}}`,
	`{"t":"token","slot":1,"token":{"label":"\u12"}}`,
	`{"t":"token"`,
}

// agree checks that parseEvent (fast path or fallback; ParseEvent before
// Printable) gives what encoding/json gives, and errors exactly when it does.
func agree(t *testing.T, line []byte) {
	got, gotErr := parseEvent(line)
	var want WorkerEvent
	wantErr := json.Unmarshal(line, &want)
	if wantErr == nil && want.Type == "" {
		wantErr = errNoType
	}
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("%q: ParseEvent error %v, encoding/json error %v", line, gotErr, wantErr)
	}
	if gotErr != nil {
		return
	}
	normalize(got.Token)
	normalize(want.Token)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n fast %+v %+v\n json %+v %+v", line, got, got.Token, want, want.Token)
	}
}

var errNoType = jsonError("no event type")

type jsonError string

func (e jsonError) Error() string { return string(e) }

func TestFastDecoderAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range decodeSeeds {
		agree(t, []byte(s))
	}
	// And on what the encoder writes, for awkward field contents.
	for _, label := range []string{"", "plain", "\x00\x1f\x7f\"\\<>&", "\u2028\u2029", "ü✓😀", "bad\xff\xfe", "\xed\xa0\x80"} {
		tok := Token{SlotID: 1<<40 + 1, Serial: label, Label: label, Flags: []string{label, FlagRNG},
			Checks: []Check{{Name: label, OK: true, Duration: time.Hour}, {Error: label, NotRun: label, Duration: -1}}}
		var buf bytes.Buffer
		ew := newEventWriter(bufio.NewWriter(&buf))
		ew.token(&tok)
		ew.flush()
		line := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		if _, ok := parseTokenEvent(line); !ok {
			t.Errorf("fast decoder rejects encoder output %q", line)
		}
		agree(t, line)
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) { agree(t, line) })
}

// TestParseEventStripsNonPrintables: what a token reports about itself
// reaches the agent without control characters (C0, DEL, C1), bidi
// overrides or zero-width marks, in both decoders.
func TestParseEventStripsNonPrintables(t *testing.T) {
	dirty := "\x1b[31mred\x07 \u202egnp.exe\u2066\u200b\u0085 lab\x7fel\t\n"
	tok := Token{Serial: "se\x00rial", Label: dirty, Model: "mo\rdel", Manufacturer: "\u202dACME\u202c", Firmware: "2.\x016", Hardware: "1.0"}
	var buf bytes.Buffer
	ew := eventWriter{w: bufio.NewWriter(&buf)}
	ew.token(&tok)
	ew.flush()
	fast := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	slow := append(bytes.TrimSuffix(fast, []byte("}")), []byte(`,"unknown":1}`)...) // forces the encoding/json fallback
	for name, line := range map[string][]byte{"fast": fast, "fallback": slow} {
		ev, err := ParseEvent(line)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := *ev.Token
		want := Token{Serial: "serial", Label: "[31mred gnp.exe label", Model: "model", Manufacturer: "ACME", Firmware: "2.6", Hardware: "1.0"}
		if got.Serial != want.Serial || got.Label != want.Label || got.Model != want.Model ||
			got.Manufacturer != want.Manufacturer || got.Firmware != want.Firmware || got.Hardware != want.Hardware {
			t.Errorf("%s: got %q %q %q %q %q %q", name, got.Serial, got.Label, got.Model, got.Manufacturer, got.Firmware, got.Hardware)
		}
	}
	ev, err := ParseEvent([]byte(`{"t":"begin","slot":3,"check":"random","serial":"a\u009bb"}`))
	if err != nil || ev.Serial != "ab" {
		t.Errorf("begin event serial: %q, %v", ev.Serial, err)
	}
}
