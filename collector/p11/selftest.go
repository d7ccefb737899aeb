package p11

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ThalesGroup/crypto11"
)

func unmarshalRequest(line []byte, req *WorkerRequest) error {
	if err := json.Unmarshal(line, req); err != nil {
		// The line may hold a PIN: never quote it.
		return fmt.Errorf("bad request line (%d bytes) on stdin: %w", len(line), jsonErrorKind(err))
	}
	return nil
}

// jsonErrorKind drops the offending text a JSON error may quote.
func jsonErrorKind(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("JSON syntax error at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q has the wrong type", te.Field)
	}
	return errors.New("not a JSON request")
}

// selfTestMain answers one self-test request and exits. It first reads the
// token's flags with a raw C_Initialize/C_Finalize cycle of its own (no
// login), and only when neither user_pin_final_try nor user_pin_locked is
// set hands the token to crypto11 (which C_Initializes again).
func selfTestMain(library string, in *bufio.Reader, out *eventWriter, log *slog.Logger) int {
	req, err := readRequest(in)
	if errors.Is(err, io.EOF) {
		return ExitOK
	}
	if err != nil {
		log.Error("cannot read self-test request", "err", err)
		return ExitBroken
	}
	log = log.With("serial", req.Serial)
	if req.Serial == "" {
		out.event(WorkerEvent{Type: EventSelfTest, Result: &Check{Name: CheckLoginSign, NotRun: "no token serial in the self-test request"}})
		out.flush()
		return ExitOK
	}

	flags, found, blocker, walk, code := tokenFlagsBySerial(library, req.Serial, out, log)
	if code != ExitOK {
		return code
	}
	ev := WorkerEvent{Type: EventSelfTest, Serial: req.Serial}
	f := blocksLogin(flags)
	switch {
	case !found:
		ev.Result = &Check{Name: CheckLoginSign, NotRun: "no token with serial " + req.Serial + " in C_GetSlotList"}
	case blocker != "":
		// crypto11 selects a token by walking the slots in order and gives
		// up at the first C_GetTokenInfo error: a broken neighbour is not
		// this token's failure.
		ev.Result = &Check{Name: CheckLoginSign, NotRun: blocker}
	case f != "":
		log.Warn("not logging in: the token reports " + f)
		ev.Result = &Check{Name: CheckLoginSign, NotRun: "token reports " + f + "; never logging in (a wrong PIN could lock it)"}
	default:
		c := loginSign(library, req.Serial, string(req.PIN), walk, log)
		ev.Result = &c
	}
	out.event(ev)
	if out.flush() != nil {
		return ExitBroken
	}
	return ExitOK
}

// tokenFlagsBySerial reads the flags of the token with serial through its
// own C_Initialize ... C_Finalize cycle. blocker is set when a slot listed
// before the token fails C_GetTokenInfo (crypto11 could not reach the token).
// walk is how long the C_GetTokenInfo calls up to the token took: crypto11
// makes the same walk, which is not the token's own time.
func tokenFlagsBySerial(library, serial string, out *eventWriter, log *slog.Logger) (flags []string, found bool, blocker string, walk time.Duration, code int) {
	ctx, ok := openModule(library, out, log)
	if !ok {
		return nil, false, "", 0, ExitInit
	}
	defer func() {
		ctx.Finalize()
		ctx.Destroy()
	}()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		out.event(WorkerEvent{Type: EventSelfTest, Serial: serial, Result: &Check{Name: CheckLoginSign, Error: ErrorName(err), NotRun: "C_GetSlotList failed"}})
		out.flush()
		return nil, false, "", 0, ExitBroken
	}
	for _, s := range slots {
		t0 := time.Now()
		ti, err := ctx.GetTokenInfo(s)
		walk += time.Since(t0)
		if err != nil {
			if blocker == "" {
				blocker = fmt.Sprintf("slot %d, listed before this token, fails C_GetTokenInfo (%s); crypto11 cannot select the token past it", s, ErrorName(err))
			}
			continue
		}
		if cleanText(ti.SerialNumber) == serial {
			return DecodeFlags(ti.Flags), true, blocker, walk, ExitOK
		}
	}
	return nil, false, "", walk, ExitOK
}

// loginSign logs in with crypto11, finds or creates the self-test key,
// signs a random nonce, verifies the signature and closes the context
// (which closes every session, logging out, and finalises the library).
// Its duration leaves out walk, the time crypto11's C_GetTokenInfo walk to
// find the token is expected to take: a slow neighbour's time is its own.
func loginSign(library, serial, pin string, walk time.Duration, log *slog.Logger) Check {
	c := Check{Name: CheckLoginSign}
	start := time.Now().Add(walk)
	fail := func(step string, err error) Check {
		c.Duration = max(time.Since(start), 0)
		c.Error = ErrorName(err)
		log.Warn("self-test failed", "step", step, "err", c.Error)
		return c
	}
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path:            library,
		TokenSerial:     serial,
		Pin:             pin,
		MaxSessions:     2,
		PoolWaitTimeout: 30 * time.Second,
	})
	if err != nil {
		if pinRefused(err) {
			c.Duration = max(time.Since(start), 0)
			c.Error = ErrorName(err)
			log.Warn("the token refused the PIN", "err", c.Error)
			return c
		}
		return fail("login", err)
	}
	closed := false
	defer func() {
		if !closed {
			ctx.Close()
		}
	}()
	label := []byte(SelfTestKeyLabel)
	keys, err := ctx.FindKeyPairs(label, label)
	if err != nil {
		return fail("find key", err)
	}
	var signer crypto11.Signer
	if len(keys) > 0 {
		signer = keys[0]
	} else {
		signer, err = ctx.GenerateECDSAKeyPairWithLabel(label, label, elliptic.P256())
		if err != nil {
			return fail("create key", err)
		}
		log.Info("created the self-test key pair", "label", SelfTestKeyLabel, "type", "ECDSA P-256")
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok {
		return fail("public key", fmt.Errorf("key %q is %T, not ECDSA; delete it so the self-test can create its own", SelfTestKeyLabel, signer.Public()))
	}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return fail("nonce", err)
	}
	digest := sha256.Sum256(nonce)
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return fail("sign", err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		return fail("verify", errors.New("signature does not verify with the key's public half"))
	}
	closed = true
	if err := ctx.Close(); err != nil {
		return fail("logout", err)
	}
	c.Duration = max(time.Since(start), 0)
	c.OK = true
	return c
}
