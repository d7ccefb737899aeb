//go:build !linux

package service

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/kardianos/service"
)

// defaultServiceConfig is the configuration file the service runs with
// unless --config says otherwise: %ProgramData%\hsm-agent\config.yml on
// Windows, /etc/hsm-agent/config.yml elsewhere.
func defaultServiceConfig() string {
	if runtime.GOOS == "windows" {
		if pd := os.Getenv("ProgramData"); pd != "" {
			return filepath.Join(pd, "hsm-agent", "config.yml")
		}
		return `C:\ProgramData\hsm-agent\config.yml`
	}
	return "/etc/hsm-agent/config.yml"
}

// platformService uses kardianos/service's own service definition (a
// Windows service, a launchd daemon) running `hsm-agent run --config FILE`.
func platformService(opts serviceOptions, stdout, stderr io.Writer) int {
	exe := opts.exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			fmt.Fprintf(stderr, "hsm-agent service %s: find this executable: %v; pass --exe\n", opts.action, err)
			return 1
		}
	}
	config, err := filepath.Abs(opts.config)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent service %s: --config %s: %v\n", opts.action, opts.config, err)
		return 1
	}
	s, err := service.New(controlOnly{}, kardianosConfig(exe, config))
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent service %s: %v\n", opts.action, err)
		return 1
	}
	if opts.action == "status" {
		return printStatus(s, serviceName, stdout, stderr)
	}
	if err := service.Control(s, opts.action); err != nil {
		fmt.Fprintf(stderr, "hsm-agent service %s: %s (%s): %v\n", opts.action, serviceName, service.Platform(), err)
		return 1
	}
	switch opts.action {
	case "install":
		fmt.Fprintf(stdout, "installed %s (%s): it runs %s run --config %s; edit the configuration, then `hsm-agent service start`\n",
			serviceName, service.Platform(), exe, config)
	default:
		fmt.Fprintf(stdout, "%s: %s done\n", serviceName, opts.action)
	}
	return 0
}
