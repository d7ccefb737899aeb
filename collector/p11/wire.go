package p11

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"
)

// Worker modes, passed as `--mode` to `hsm-agent probe-worker`.
const (
	// ModeProbe walks every token with C_GetTokenInfo, a read-only session
	// and C_GenerateRandom; the worker stays alive for further requests.
	ModeProbe = "probe"
	// ModeSelfTest logs in to one token with crypto11, signs a nonce and
	// verifies it; the worker answers one request and exits.
	ModeSelfTest = "selftest"
)

// SelfTestKeyLabel is the CKA_LABEL (and CKA_ID) of the key pair the
// self-test creates on first use and signs with afterwards.
const SelfTestKeyLabel = "hsm-agent-selftest"

// WorkerArgs returns the arguments after `probe-worker` that start a worker
// for library in mode. The PIN is never an argument: it travels on stdin.
func WorkerArgs(library, mode string) []string {
	return []string{"--library", library, "--mode", mode}
}

// PIN is a user PIN on its way to the self-test worker. It prints and logs
// as <secret>; only the JSON encoding of a WorkerRequest carries the value,
// and that goes nowhere but the worker's stdin.
type PIN string

// String hides the PIN.
func (PIN) String() string { return "<secret>" }

// GoString hides the PIN from %#v.
func (PIN) GoString() string { return "<secret>" }

// LogValue hides the PIN from slog.
func (PIN) LogValue() slog.Value { return slog.StringValue("<secret>") }

// WorkerRequest is one JSON line the parent writes to a worker's stdin.
type WorkerRequest struct {
	// SkipSlots and SkipSerials name tokens a probe must not touch (a token
	// that hung in an earlier worker) or need not report again.
	SkipSlots   []uint   `json:"skip_slots,omitempty"`
	SkipSerials []string `json:"skip_serials,omitempty"`
	// Serial and PIN select and unlock the token of a self-test.
	Serial string `json:"serial,omitempty"`
	PIN    PIN    `json:"pin,omitempty"`
}

// Worker event types (WorkerEvent.Type).
const (
	// EventReady: the library loaded and C_Initialize succeeded.
	EventReady = "ready"
	// EventFatal: the library could not load or initialise; the worker exits.
	EventFatal = "fatal"
	// FatalLoadError is the Error of an EventFatal when the library itself
	// could not be loaded (missing file, not a PKCS#11 library).
	FatalLoadError = "load_error"
	// EventSlots: C_GetSlotList answered; SlotList holds the slots in order.
	EventSlots = "slots"
	// EventBegin: the worker starts Check on Slot (Serial once known).
	EventBegin = "begin"
	// EventToken: one token is done; Token holds the result.
	EventToken = "token"
	// EventDone: the request is finished; Error is set if C_GetSlotList failed.
	EventDone = "done"
	// EventSelfTest: the self-test result of Serial in Result.
	EventSelfTest = "selftest"
)

// WorkerEvent is one JSON line a worker writes on its protocol descriptor.
type WorkerEvent struct {
	Type     string `json:"t"`
	Slot     uint   `json:"slot"`
	Check    string `json:"check,omitempty"`
	Serial   string `json:"serial,omitempty"`
	SlotList []uint `json:"slot_list,omitempty"`
	Token    *Token `json:"token,omitempty"`
	Result   *Check `json:"result,omitempty"`
	Error    string `json:"error,omitempty"`
	Message  string `json:"msg,omitempty"`
}

// ParseEvent decodes one line of worker output. The strings a token
// reports about itself come out Printable.
func ParseEvent(line []byte) (WorkerEvent, error) {
	ev, err := parseEvent(line)
	if err == nil {
		ev.Serial = Printable(ev.Serial)
		if ev.Token != nil {
			printableToken(ev.Token)
		}
	}
	return ev, err
}

func parseEvent(line []byte) (WorkerEvent, error) {
	if bytes.HasPrefix(line, tokenPrefix) {
		if ev, ok := parseTokenEvent(line); ok {
			return ev, nil
		}
	}
	var ev WorkerEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return ev, fmt.Errorf("bad worker output line %.80q: %w", line, err)
	}
	if ev.Type == "" {
		return ev, fmt.Errorf("bad worker output line %.80q: no event type", line)
	}
	return ev, nil
}

// eventWriter writes events as JSON lines into a buffer; flush sends them.
// The encoders are hand-written: a warm poll of 1,000 tokens writes about
// 4,000 lines and reflection-based encoding showed up in profiles.
type eventWriter struct {
	w   *bufio.Writer
	buf []byte
	err error
}

func newEventWriter(w *bufio.Writer) *eventWriter {
	return &eventWriter{w: w, buf: make([]byte, 0, 1024)}
}

func (e *eventWriter) emit(b []byte) {
	if e.err != nil {
		return
	}
	_, e.err = e.w.Write(b)
}

func (e *eventWriter) flush() error {
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.err
}

func (e *eventWriter) begin(slot uint, check, serial string) {
	b := append(e.buf[:0], `{"t":"begin","slot":`...)
	b = strconv.AppendUint(b, uint64(slot), 10)
	b = append(b, `,"check":`...)
	b = appendString(b, check)
	if serial != "" {
		b = append(b, `,"serial":`...)
		b = appendString(b, serial)
	}
	b = append(b, "}\n"...)
	e.buf = b
	e.emit(b)
}

func (e *eventWriter) token(t *Token) {
	b := append(e.buf[:0], `{"t":"token","slot":`...)
	b = strconv.AppendUint(b, uint64(t.SlotID), 10)
	b = append(b, `,"token":`...)
	b = appendToken(b, t)
	b = append(b, "}\n"...)
	e.buf = b
	e.emit(b)
}

// event writes any other event through encoding/json (rare lines only).
func (e *eventWriter) event(ev WorkerEvent) {
	b, err := json.Marshal(ev)
	if err != nil {
		e.err = err
		return
	}
	e.emit(append(b, '\n'))
}

func appendToken(b []byte, t *Token) []byte {
	b = append(b, `{"slot_id":`...)
	b = strconv.AppendUint(b, uint64(t.SlotID), 10)
	b = append(b, `,"serial":`...)
	b = appendString(b, t.Serial)
	b = append(b, `,"label":`...)
	b = appendString(b, t.Label)
	b = append(b, `,"model":`...)
	b = appendString(b, t.Model)
	b = append(b, `,"manufacturer":`...)
	b = appendString(b, t.Manufacturer)
	b = append(b, `,"firmware":`...)
	b = appendString(b, t.Firmware)
	b = append(b, `,"hardware":`...)
	b = appendString(b, t.Hardware)
	b = append(b, `,"flags":[`...)
	for i, f := range t.Flags {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, f)
	}
	b = append(b, `],"checks":[`...)
	for i := range t.Checks {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCheck(b, &t.Checks[i])
	}
	return append(b, "]}"...)
}

func appendCheck(b []byte, c *Check) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, c.Name)
	b = append(b, `,"ok":`...)
	b = strconv.AppendBool(b, c.OK)
	b = append(b, `,"duration_ns":`...)
	b = strconv.AppendInt(b, int64(c.Duration/time.Nanosecond), 10)
	if c.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, c.Error)
	}
	if c.NotRun != "" {
		b = append(b, `,"not_run":`...)
		b = appendString(b, c.NotRun)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 (token fields are
// fixed-size byte arrays) becomes U+FFFD, as encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			case c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
