package collector

import (
	"slices"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/collector/probe"
)

// applyLocked classifies the devices of one module from its poll result
// (req is the request that result answers).
func (c *Collector) applyLocked(r *moduleRunner, req probe.Request, res probe.Result) {
	now := c.now()
	pol := PolicyFrom(c.cfg)
	r.status = ModuleStatus{
		Name:         r.name,
		Polled:       true,
		Start:        res.Start,
		Duration:     res.Duration,
		Fresh:        res.Fresh,
		Error:        res.ModuleError,
		Unresponsive: len(res.Unresponsive),
		Crashed:      len(res.Crashed),
		Tokens:       len(res.Tokens),
	}
	if res.ModuleError != "" {
		r.logger.Debug("module poll failed", "err", res.ModuleError)
	}

	res.Tokens = c.carrySelfTestsLocked(r.name, req.SelfTests, res.Tokens, now)
	asked := make(map[string]bool, len(req.SelfTests))
	for _, st := range req.SelfTests {
		asked[st.Serial] = true
	}
	for _, d := range c.devs {
		if d.Module != r.name {
			continue
		}
		ds := c.devices[d.Name]
		v := Classify(d.Serial, res, pol)
		prev := ds.status
		st := DeviceStatus{
			Device: d.Name, Serial: d.Serial, Module: d.Module,
			State: v.State, Kind: v.Kind, Reason: v.Reason, ModuleWide: v.ModuleWide,
			Token: prev.Token, Reported: v.Token != nil,
			LastSuccess: prev.LastSuccess, Since: prev.Since,
			Fresh: res.Fresh, Updated: now, SelfTestAt: ds.selfTestAt, SelfTestAsked: asked[d.Serial],
		}
		if v.Token != nil {
			st.Token = withKnownIdentity(v.Token, prev.Token)
			st.Checks = v.Token.Checks
		}
		if st.Token != nil {
			st.FirmwareCompliant = FirmwareCompliant(st.Token.Firmware, pol.Firmware)
		}
		st.Findings = DeviceFindings(st, pol)
		if st.Up() {
			st.LastSuccess = now
		}
		if prev.State != st.State {
			st.Since = now
			c.logTransition(d, prev.State, st)
		}
		ds.status = st
		ds.hist.add(Observation{Time: now, Serial: d.Serial, State: st.State, Kind: st.Kind,
			Reason: st.Reason, Fresh: res.Fresh, Token: v.Token})
	}

	// Tokens not in the inventory, keeping the first-seen time of known ones.
	seen := make(map[string]time.Time, len(r.unexpected))
	for _, u := range r.unexpected {
		seen[u.Token.Serial] = u.Since
	}
	var unexpected []UnexpectedToken
	for _, t := range res.Tokens {
		if t.Serial == "" || c.serials[t.Serial] || !t.HasFlag(p11.FlagTokenInitialized) {
			continue // in the inventory, or an uninitialised spare slot
		}
		since, ok := seen[t.Serial]
		if !ok {
			since = now
			r.logger.Warn("token not in the inventory (a replacement unit?)",
				"serial", t.Serial, "label", t.Label, "model", t.Model, "firmware", t.Firmware)
		}
		unexpected = append(unexpected, UnexpectedToken{Module: r.name, Token: t, Since: since})
	}
	r.unexpected = unexpected
	r.status.Unexpected = len(unexpected)
}

// carrySelfTestsLocked keeps each device's last login_sign result standing
// between self-tests: a token of a device the poll asked a self-test for
// (it has a PIN) that reported without a login_sign check gets the last
// one that ran. A check that ran replaces the stored one; one not attempted
// (NotRun) clears it, since the old result no longer describes the token.
// The returned tokens are copies.
func (c *Collector) carrySelfTestsLocked(module string, selfTests []probe.SelfTest, tokens []p11.Token, now time.Time) []p11.Token {
	if len(selfTests) == 0 {
		return tokens
	}
	asked := make(map[string]bool, len(selfTests))
	for _, st := range selfTests {
		asked[st.Serial] = true
	}
	bySerial := map[string]*deviceState{}
	for _, d := range c.devs {
		if d.Module == module && asked[d.Serial] {
			bySerial[d.Serial] = c.devices[d.Name]
		}
	}
	if len(bySerial) == 0 {
		return tokens
	}
	out := slices.Clone(tokens)
	for i := range out {
		ds := bySerial[out[i].Serial]
		if ds == nil || out[i].Serial == "" {
			continue
		}
		idx := slices.IndexFunc(out[i].Checks, func(ch p11.Check) bool { return ch.Name == p11.CheckLoginSign })
		switch {
		case idx >= 0 && out[i].Checks[idx].NotRun == "":
			ds.selfTest, ds.selfTestAt = out[i].Checks[idx], now
		case idx >= 0:
			ds.selfTest, ds.selfTestAt = p11.Check{}, time.Time{}
		case ds.selfTest.Name != "":
			out[i].Checks = append(slices.Clone(out[i].Checks), ds.selfTest)
		}
	}
	return out
}

// logTransition logs a device's change of state once (quiet loops).
func (c *Collector) logTransition(d config.Device, from State, st DeviceStatus) {
	attrs := []any{"device", d.Name, "serial", d.Serial, "module", d.Module, "state", string(st.State)}
	if from != "" {
		attrs = append(attrs, "previous", string(from))
	}
	if st.State == StateHealthy {
		c.logger.Info("device healthy", attrs...)
		return
	}
	attrs = append(attrs, "kind", string(st.Kind), "reason", st.Reason)
	c.logger.Warn("device not healthy", attrs...)
}

// storeLocked builds and publishes a snapshot of the current state.
func (c *Collector) storeLocked(polled []string) *Snapshot {
	s := &Snapshot{Time: c.now(), Polled: polled, PollInterval: c.cfg.PollInterval,
		StallAfter: StallAfter(c.cfg.PollInterval, c.cfg.ProbeTimeout)}
	if s.Polled == nil {
		s.Polled = []string{}
	}
	ready := true
	for _, r := range c.runnersLocked() {
		m := r.status
		m.Unexpected = 0
		for _, u := range r.unexpected {
			if !c.serials[u.Token.Serial] { // a reload may have registered it since
				s.Unexpected = append(s.Unexpected, u)
				m.Unexpected++
			}
		}
		s.Modules = append(s.Modules, m)
		ready = ready && r.status.Polled
	}
	if ready && polled != nil {
		c.ready = true // latched: a reload adding a module does not unready the agent
	}
	s.Ready = c.ready
	for _, d := range c.devs {
		st := c.devices[d.Name].status
		st.Inventory = d
		s.Devices = append(s.Devices, st)
	}
	c.snap.Store(s)
	return s
}

// withKnownIdentity returns tok, or, when its C_GetTokenInfo failed (so its
// model, firmware, label and flags are unknown), the last identity seen for
// the device with this poll's slot and checks: an unreadable token must not
// look like a token with empty firmware.
func withKnownIdentity(tok, prev *p11.Token) *p11.Token {
	if prev == nil || tokenInfoOK(*tok) {
		return tok
	}
	merged := *prev
	merged.SlotID = tok.SlotID
	merged.Checks = tok.Checks
	return &merged
}

// tokenInfoOK reports whether the token's C_GetTokenInfo succeeded.
func tokenInfoOK(tok p11.Token) bool {
	for _, c := range tok.Checks {
		if c.Name == p11.CheckTokenInfo {
			return c.OK
		}
	}
	return tok.Firmware != ""
}
