package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hsm-agent/hsm-agent/agent"
	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

const demoUsage = `Usage:
  hsm-agent demo [--dir DIR] [--listen ADDR]
      create (once) a 3-token SoftHSM2 fleet under DIR, write DIR/config.yml
      and run the agent on it in the foreground, through the fault module
  hsm-agent demo fail DEVICE FAULT [VALUE] [--dir DIR]
      inject FAULT into the demo device DEVICE (hsm-a, hsm-b or hsm-c); FAULT is one of
      missing, device_error, hang, slow (VALUE = milliseconds), firmware (VALUE = "12.50"),
      serial (VALUE = new serial), label (VALUE = new label), flags (VALUE = e.g.
      user_pin_locked), crash (abort), segv (segmentation fault), chatter (the library
      prints on stdout and stderr), flood (VALUE = bytes written to stdout, no newline)
  hsm-agent demo fail module FAULT [VALUE] [--dir DIR]
      inject a fault into the whole PKCS#11 module: init_error, crash, segv, hang,
      slow, device_error (VALUE = C_ function names, default C_GetSlotList), chatter, flood
  hsm-agent demo clear [DEVICE|module] [--dir DIR]
      remove the faults of DEVICE, of the module, or every fault
  SIGHUP reloads DIR/config.yml, as for "run".
`

// demoDevices is the demo inventory: mixed tiers, environments and pools.
var demoDevices = []struct{ name, env, pool, tier, region string }{
	{"hsm-a", config.EnvProduction, "payments", config.TierPremiumPlus, "emea"},
	{"hsm-b", config.EnvProduction, "payments", config.TierPremium, "americas"},
	{"hsm-c", config.EnvDevelopment, "", config.TierStandard, "apac"},
}

// Demo runs the `demo` subcommand and returns its exit code.
func Demo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, demoUsage) }
	dir := fs.String("dir", ".demo", "demo state `DIR`ectory")
	listen := fs.String("listen", "127.0.0.1:9842", "HTTP listen `ADDR`ess")
	// Flags may follow the positional arguments: parse them wherever they are.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent demo: %v\n", err)
		return 1
	}
	switch sub {
	case "":
		err = runDemo(ctx, absDir, *listen, stdout, stderr)
	case "fail":
		if len(pos) < 2 || len(pos) > 3 {
			fmt.Fprint(stderr, demoUsage)
			return 2
		}
		value := ""
		if len(pos) == 3 {
			value = pos[2]
		}
		err = demoFault(absDir, pos[0], pos[1], value, stdout)
	case "clear":
		if len(pos) > 1 {
			fmt.Fprint(stderr, demoUsage)
			return 2
		}
		device := ""
		if len(pos) == 1 {
			device = pos[0]
		}
		err = demoClear(absDir, device, stdout)
	default:
		fmt.Fprintf(stderr, "hsm-agent demo: unknown subcommand %q\n%s", sub, demoUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent demo: %v\n", err)
		return 1
	}
	return 0
}

// demoSetup creates the fleet, the fault module and the configuration
// under dir unless they exist, and returns the configuration file.
func demoSetup(dir, listen string) (string, error) {
	if _, err := os.Stat(pkcs11test.SoftHSMLibrary); err != nil {
		return "", fmt.Errorf("SoftHSM2 is not installed (%s missing): run `make demo`, or `apt-get install softhsm2`", pkcs11test.SoftHSMLibrary)
	}
	fleetDir := filepath.Join(dir, "fleet")
	fleet, err := pkcs11test.CachedFleet(fleetDir, len(demoDevices))
	if err != nil {
		return "", err
	}
	module, err := pkcs11test.BuildFaultModule(filepath.Join(dir, "lib"))
	if err != nil {
		return "", err
	}
	faults, err := pkcs11test.NewFaults(filepath.Join(dir, "faults"))
	if err != nil {
		return "", err
	}
	pinDir := filepath.Join(dir, "pins")
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		return "", err
	}
	env := fleet.Env()
	maps.Copy(env, faults.Env())
	var b strings.Builder
	fmt.Fprintf(&b, "# hsm-agent demo configuration, written by `hsm-agent demo`.\n")
	fmt.Fprintf(&b, "state_dir: %q\nlisten: %q\npoll_interval: 5s\nrecheck_interval: 2s\nprobe_timeout: 5s\nconfirm_polls: 3\n", filepath.Join(dir, "state"), listen)
	fmt.Fprintf(&b, "modules:\n  - name: softhsm\n    library: %q\n    env:\n", module)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(&b, "      %s: %q\n", k, env[k])
	}
	fmt.Fprintf(&b, "pools:\n  - name: payments\n    min_healthy: 1\n")
	fmt.Fprintf(&b, "devices:\n")
	for i, d := range demoDevices {
		tok := fleet.Tokens[i]
		fmt.Fprintf(&b, "  - name: %s\n    serial: %q\n    module: softhsm\n    environment: %s\n", d.name, tok.Serial, d.env)
		if d.pool != "" {
			fmt.Fprintf(&b, "    pool: %s\n", d.pool)
		}
		fmt.Fprintf(&b, "    commissioned: true\n    contract: {id: C-%d, tier: %s, expires: 2027-06-30, region: %s}\n", 1001+i, d.tier, d.region)
		fmt.Fprintf(&b, "    site: {address: \"1 Quay St, Leeds\", contact: \"Ops desk\", phone: \"+44 113 000 0000\"}\n")
		if i == 0 { // one device runs the logged-in self-test
			pinFile := filepath.Join(pinDir, d.name)
			if err := os.WriteFile(pinFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "    pin_file: %q\n", pinFile)
		}
	}
	fmt.Fprintf(&b, "firmware: {minimum: \"2.0\", approved: [\"2.6\"]}\n")
	fmt.Fprintf(&b, "desks:\n")
	fmt.Fprintf(&b, "  - {name: vendor, type: spool, role: vendor, dir: %q, phones: {emea: \"+44 20 7946 0000\", americas: \"+1 212 555 0100\", apac: \"+852 2555 0100\"}}\n", filepath.Join(dir, "spool", "vendor"))
	fmt.Fprintf(&b, "  - {name: ops, type: spool, role: internal, dir: %q}\n", filepath.Join(dir, "spool", "ops"))
	fmt.Fprintf(&b, "  - {name: pager, type: spool, role: pager, dir: %q}\n", filepath.Join(dir, "spool", "pager"))
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	if _, err := config.Load(cfgFile); err != nil {
		return "", fmt.Errorf("demo configuration does not load: %w", err)
	}
	return cfgFile, nil
}

func runDemo(ctx context.Context, dir, listen string, stdout, stderr io.Writer) error {
	cfgFile, err := demoSetup(dir, listen)
	if err != nil {
		return err
	}
	rel := func(p string) string {
		if wd, err := os.Getwd(); err == nil {
			if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
				return r
			}
		}
		return p
	}
	self := "hsm-agent"
	if exe, err := os.Executable(); err == nil {
		self = rel(exe)
	}
	fmt.Fprintf(stdout, `hsm-agent demo: 3 SoftHSM2 tokens under %s, configuration %s
  metrics:      http://%s/metrics
  status page:  http://%s/
  in another terminal:
    %s check --config %s                 one poll, as a table
    %s demo fail hsm-b device_error --dir %s    make hsm-b fail (try: missing, hang, slow 3000, crash;
                                                      or the whole module: demo fail module init_error)
    %s demo clear --dir %s                      remove every fault
    %s cases --config %s                 the cases a confirmed fault opened
  A fault seen on 3 consecutive polls (one after a fresh C_Initialize) opens a case:
  its events and diagnostics bundle land in %s/{vendor,ops,pager}/.
  Ctrl-C stops the agent.
`, rel(dir), rel(cfgFile), listen, listen, self, rel(cfgFile), self, rel(dir), self, rel(dir), self, rel(cfgFile), rel(filepath.Join(dir, "spool")))
	return agent.Run(ctx, agent.Options{ConfigFile: cfgFile, Logger: agent.NewLogger(stderr, slog.LevelInfo), Reload: HangupReloads()})
}

// demoFaults opens the demo's fault control directory and finds a device's serial.
func demoFaults(dir, device string) (*pkcs11test.Faults, string, error) {
	cfg, err := config.Load(filepath.Join(dir, "config.yml"))
	if err != nil {
		return nil, "", fmt.Errorf("%w (run `hsm-agent demo --dir %s` first)", err, dir)
	}
	faults, err := pkcs11test.NewFaults(filepath.Join(dir, "faults"))
	if err != nil {
		return nil, "", err
	}
	if device == "" {
		return faults, "", nil
	}
	d, ok := cfg.Device(device)
	if !ok {
		var names []string
		for _, d := range cfg.Devices {
			names = append(names, d.Name)
		}
		return nil, "", fmt.Errorf("no demo device %q: use one of %s", device, strings.Join(names, ", "))
	}
	return faults, d.Serial, nil
}

// demoModule names the whole module in `demo fail` and `demo clear`.
const demoModule = "module"

func demoFault(dir, device, fault, value string, stdout io.Writer) error {
	if device == demoModule {
		faults, _, err := demoFaults(dir, "")
		if err != nil {
			return err
		}
		if err := faults.SetModule(pkcs11test.Fault(fault), value); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "module softhsm: %s %s injected; the next poll sees it\n", fault, value)
		return nil
	}
	faults, serial, err := demoFaults(dir, device)
	if err != nil {
		return err
	}
	if err := faults.Set(serial, pkcs11test.Fault(fault), value); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (serial %s): %s %s injected; the next poll sees it\n", device, serial, fault, value)
	return nil
}

func demoClear(dir, device string, stdout io.Writer) error {
	name := device
	if device == demoModule {
		name = ""
	}
	faults, serial, err := demoFaults(dir, name)
	if err != nil {
		return err
	}
	switch device {
	case demoModule:
		err = faults.ClearModuleAll()
	case "":
		err = faults.ClearAll()
	default:
		err = faults.ClearToken(serial)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "faults cleared")
	return nil
}
