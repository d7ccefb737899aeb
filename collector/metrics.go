package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hsm-agent/hsm-agent/collector/p11"
)

// tokenFlags are the token flags exported as hsm_token_flag, in order.
var tokenFlags = []string{
	p11.FlagTokenInitialized,
	p11.FlagLoginRequired,
	p11.FlagUserPINCountLow,
	p11.FlagUserPINFinalTry,
	p11.FlagUserPINLocked,
	p11.FlagUserPINToBeChange,
	p11.FlagSOPINCountLow,
	p11.FlagSOPINFinalTry,
	p11.FlagSOPINLocked,
	p11.FlagSOPINToBeChanged,
	p11.FlagWriteProtected,
	p11.FlagErrorState,
}

// Metric descriptors. What a device exports depends on what is known:
//   - before its module's first poll: only hsm_contract_expiry_timestamp_seconds
//     (absent data means "not known yet", not "down"; /-/ready tells the two apart);
//   - after it: hsm_up and hsm_device_state always; hsm_device_info and
//     hsm_firmware_compliant once the token was seen at least once (last seen
//     values, kept while it is missing); hsm_check_* and hsm_token_flag only
//     for the checks and flags of the latest poll (login_sign: the result of
//     the last self-test that ran; a check not attempted exports nothing);
//     hsm_last_success_timestamp_seconds
//     once a poll fully succeeded since the agent started.
var (
	descUp = prometheus.NewDesc("hsm_up",
		"1 if the HSM answered the latest probe and every check succeeded (state healthy or degraded), or its only failures are operational (a wrong or locked PIN: the HSM works); 0 if it failed a check for another reason, is missing, did not answer before the probe deadline or its PKCS#11 module could not be probed.",
		[]string{"device", "serial"}, nil)
	descInfo = prometheus.NewDesc("hsm_device_info",
		"Always 1; labels describe the HSM token last seen under the device's inventory serial (label, model, manufacturer, firmware and hardware version) and the PKCS#11 module it is reached through.",
		[]string{"device", "serial", "label", "model", "manufacturer", "firmware", "hardware", "module"}, nil)
	descState = prometheus.NewDesc("hsm_device_state",
		"Health of the HSM: 1 for the current state, 0 for the others. healthy: all checks passed; degraded: a check was slower than slow_threshold or the user PIN retry counter is low; failed: a check returned an error or the user PIN is locked; missing: the serial was not found in its module; unresponsive: the HSM did not answer before probe_timeout; module_error: the PKCS#11 library could not be loaded or initialised, or its worker crashed.",
		[]string{"device", "state"}, nil)
	descCheckSuccess = prometheus.NewDesc("hsm_check_success",
		"1 if the named check (token_info, session_open, random, login_sign) succeeded in the latest probe of the HSM, 0 if it returned an error. login_sign (log in, sign, verify) runs at most every selftest_interval; its last result stands in between.",
		[]string{"device", "check"}, nil)
	descCheckDuration = prometheus.NewDesc("hsm_check_duration_seconds",
		"How long the named check took in the latest probe of the HSM, in seconds.",
		[]string{"device", "check"}, nil)
	descLastSuccess = prometheus.NewDesc("hsm_last_success_timestamp_seconds",
		"Unix time of the last probe in which the HSM answered and every check succeeded (or failed only for an operational reason, a wrong or locked PIN: hsm_up 1); absent if none has since the agent started.",
		[]string{"device"}, nil)
	descFlag = prometheus.NewDesc("hsm_token_flag",
		"1 if the HSM token reported the named PKCS#11 token flag (CKF_ name in lower case, e.g. user_pin_locked) in the latest probe, 0 if not.",
		[]string{"device", "flag"}, nil)
	descContract = prometheus.NewDesc("hsm_contract_expiry_timestamp_seconds",
		"Unix time (midnight UTC of the expiry date) when the device's support contract of the given tier expires, from the inventory.",
		[]string{"device", "tier"}, nil)
	descFirmware = prometheus.NewDesc("hsm_firmware_compliant",
		"1 if the HSM's firmware version meets the fleet policy (not in firmware.end_of_life, at least firmware.minimum and one of firmware.approved when set), 0 if not.",
		[]string{"device"}, nil)
	descUnexpected = prometheus.NewDesc("hsm_unexpected_tokens",
		"Number of initialised tokens the module reported whose serial is not in the inventory (for example a replacement unit not registered yet).",
		[]string{"module"}, nil)
	descModuleDuration = prometheus.NewDesc("hsm_module_probe_duration_seconds",
		"How long the latest probe of the PKCS#11 module took, in seconds.",
		[]string{"module"}, nil)
	descLastPoll = prometheus.NewDesc("hsm_last_poll_timestamp_seconds",
		"Unix time when the latest poll of the PKCS#11 module completed; a value older than a few poll intervals means the poll loop stalled and every other series of the module is stale.",
		[]string{"module"}, nil)
	descPollDuration = prometheus.NewDesc("hsm_poll_duration_seconds",
		"How long the latest poll of the PKCS#11 module took, in seconds (the same value as hsm_module_probe_duration_seconds).",
		[]string{"module"}, nil)
	descPollInterval = prometheus.NewDesc("hsm_poll_interval_seconds",
		"The configured poll_interval, in seconds: alert rules compare hsm_last_poll_timestamp_seconds with it.",
		[]string{"module"}, nil)
	descModuleSuccess = prometheus.NewDesc("hsm_module_probe_success",
		"1 if the latest probe of the PKCS#11 module completed (library loaded and initialised, no worker crash, no token past the probe deadline), 0 if not.",
		[]string{"module"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descInfo, descState, descCheckSuccess,
		descCheckDuration, descLastSuccess, descFlag, descContract, descFirmware,
		descUnexpected, descModuleDuration, descModuleSuccess, descLastPoll, descPollDuration, descPollInterval} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It reads only the last published
// snapshot: it takes no lock and never waits on a probe.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	collectSnapshot(c.snap.Load(), ch)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func collectSnapshot(s *Snapshot, ch chan<- prometheus.Metric) {
	for _, d := range s.Devices {
		if ct := d.Inventory.Contract; !ct.Expires.IsZero() {
			gauge(ch, descContract, float64(ct.Expires.Unix()), d.Device, ct.Tier)
		}
		if !d.Polled() {
			continue
		}
		gauge(ch, descUp, boolValue(d.Up()), d.Device, d.Serial)
		for _, st := range States {
			gauge(ch, descState, boolValue(d.State == st), d.Device, string(st))
		}
		if t := d.Token; t != nil {
			gauge(ch, descInfo, 1, d.Device, d.Serial, t.Label, t.Model, t.Manufacturer, t.Firmware, t.Hardware, d.Module)
			if t.Firmware != "" { // unknown until C_GetTokenInfo once succeeded
				gauge(ch, descFirmware, boolValue(d.FirmwareCompliant), d.Device)
			}
		}
		if !d.LastSuccess.IsZero() {
			gauge(ch, descLastSuccess, float64(d.LastSuccess.UnixNano())/1e9, d.Device)
		}
		seen := map[string]bool{}
		for _, chk := range d.Checks {
			if seen[chk.Name] || (chk.NotRun != "" && chk.Error == "") {
				continue // one series per check; a check not attempted has no outcome
			}
			seen[chk.Name] = true
			gauge(ch, descCheckSuccess, boolValue(chk.OK), d.Device, chk.Name)
			if chk.NotRun == "" { // a standing result was not timed in this poll
				gauge(ch, descCheckDuration, chk.Duration.Seconds(), d.Device, chk.Name)
			}
		}
		if d.Reported && d.Token != nil {
			for _, f := range tokenFlags {
				gauge(ch, descFlag, boolValue(d.Token.HasFlag(f)), d.Device, f)
			}
		}
	}
	for _, m := range s.Modules {
		if !m.Polled {
			continue
		}
		gauge(ch, descUnexpected, float64(m.Unexpected), m.Name)
		gauge(ch, descModuleDuration, m.Duration.Seconds(), m.Name)
		gauge(ch, descModuleSuccess, boolValue(m.Success()), m.Name)
		gauge(ch, descLastPoll, float64(m.LastPoll().UnixNano())/1e9, m.Name)
		gauge(ch, descPollDuration, m.Duration.Seconds(), m.Name)
		gauge(ch, descPollInterval, s.PollInterval.Seconds(), m.Name)
	}
}
