package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/alertmanager"
	"github.com/hsm-agent/hsm-agent/rma/desk/email"
	"github.com/hsm-agent/hsm-agent/rma/desk/jira"
	"github.com/hsm-agent/hsm-agent/rma/desk/pagerduty"
	"github.com/hsm-agent/hsm-agent/rma/desk/rt"
	"github.com/hsm-agent/hsm-agent/rma/desk/servicenow"
	"github.com/hsm-agent/hsm-agent/rma/desk/spool"
	"github.com/hsm-agent/hsm-agent/rma/desk/webhook"
	"github.com/hsm-agent/hsm-agent/rma/desk/zendesk"
)

// DeskOptions are what the desk registry gives every desk beyond its own
// configuration section.
type DeskOptions struct {
	// Version goes into the User-Agent of HTTP desks ("hsm-agent/<Version>");
	// the agent passes its Version.
	Version string
	// Transport replaces the HTTP transport of HTTP desks (default: proxy
	// from the environment, the system's root CAs); for tests.
	Transport http.RoundTripper
}

// NewDesk is the desk registry: it builds the desk cfg describes, by
// cfg.Type. It reads the desk's secret at once (an unreadable secret is an
// error now, not at the first case).
func NewDesk(cfg config.Desk, logger *slog.Logger, o DeskOptions) (desk.Desk, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Each case returns nil, not a nil pointer in a non-nil interface.
	switch cfg.Type {
	case config.DeskWebhook:
		d, err := webhook.New(cfg, logger, webhook.Options{Version: o.Version, Transport: o.Transport})
		if err != nil {
			return nil, err
		}
		return d, nil
	case config.DeskSpool:
		d, err := spool.New(cfg, logger)
		if err != nil {
			return nil, err
		}
		return d, nil
	case config.DeskRT:
		d, err := rt.New(cfg, logger, rt.Options{Version: o.Version, Transport: o.Transport})
		if err != nil {
			return nil, err
		}
		return d, nil
	case config.DeskEmail:
		d, err := email.New(cfg, logger, email.Options{Version: o.Version})
		if err != nil {
			return nil, err
		}
		return d, nil
	case config.DeskZendesk:
		d, err := zendesk.New(cfg, logger, zendesk.Options{Version: o.Version, Transport: o.Transport})
		if err != nil {
			return nil, err
		}
		return d, nil
	case config.DeskJira:
		d, err := jira.New(cfg, logger, jira.Options{Version: o.Version, Transport: o.Transport})
		if err != nil {
			return nil, err
		}
		return d, nil
	case config.DeskPagerDuty:
		d, err := pagerduty.New(cfg, logger, pagerduty.Options{Version: o.Version, Transport: o.Transport})
		if err != nil {
			return nil, err
		}
		return d, nil
	case config.DeskServiceNow:
		d, err := servicenow.New(cfg, logger, servicenow.Options{Version: o.Version, Transport: o.Transport})
		if err != nil {
			return nil, err
		}
		return d, nil
	case config.DeskAlertmanager:
		d, err := alertmanager.New(cfg, logger, alertmanager.Options{Version: o.Version, Transport: o.Transport})
		if err != nil {
			return nil, err
		}
		return d, nil
	default:
		return nil, fmt.Errorf("desk %q: type %q is not known; use one of %s", cfg.Name, cfg.Type, strings.Join(config.DeskTypes(), ", "))
	}
}

// NewDesks builds every configured desk (NewDesk); the error joins every
// desk's error.
func NewDesks(cfgs []config.Desk, logger *slog.Logger, o DeskOptions) ([]desk.Desk, error) {
	var (
		desks []desk.Desk
		errs  []error
	)
	for _, c := range cfgs {
		d, err := NewDesk(c, logger, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		desks = append(desks, d)
	}
	return desks, errors.Join(errs...)
}
