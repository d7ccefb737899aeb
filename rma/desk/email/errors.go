package email

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"

	gomail "github.com/wneessen/go-mail"

	"github.com/hsm-agent/hsm-agent/rma/desk"
)

// code returns the SMTP reply code in err's chain (0 when the relay gave
// none).
func code(err error) int {
	var se *gomail.SendError
	if errors.As(err, &se) && se.ErrorCode() > 0 {
		return se.ErrorCode()
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// enhanced returns the enhanced status code of the relay's reply, if any.
func enhanced(err error) string {
	var se *gomail.SendError
	if errors.As(err, &se) {
		return se.EnhancedStatusCode()
	}
	return ""
}

// classify reports whether a later attempt may succeed: SMTP 4xx and
// every error without a reply (connection, TLS, timeout) retry; 5xx
// replies park.
func classify(err error) bool {
	c := code(err)
	if c >= 500 {
		return false
	}
	var se *gomail.SendError
	if c == 0 && errors.As(err, &se) && !se.IsTemp() && se.Reason != gomail.ErrConnCheck {
		return false
	}
	return true
}

// reason is the metric label of a failed attempt: a permanent SMTP reply
// counts as status_4xx (refused for good), a temporary one as status_5xx
// (retried), no reply as connection.
func reason(err error) desk.Reason {
	switch c := code(err); {
	case c >= 500:
		return desk.ReasonStatus4xx
	case c >= 400:
		return desk.ReasonStatus5xx
	}
	if !classify(err) {
		return desk.ReasonStatus4xx
	}
	return desk.ReasonOf(err)
}

// describe says which step failed and what to check.
func describe(err error, username string) string {
	msg := err.Error()
	var cert x509.UnknownAuthorityError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	var netErr net.Error
	c := code(err)
	switch {
	case errors.As(err, &cert) || errors.As(err, &host) || errors.As(err, &verify) || strings.Contains(msg, "tls:") || strings.Contains(msg, "STARTTLS"):
		return "TLS failed (check tls and ca_file, and that the relay offers STARTTLS or implicit TLS on this port): " + msg
	case c == 530 || enhanced(err) == "5.7.0":
		return "auth required: the relay wants SMTP AUTH before it takes mail (set username and password_file): " + msg
	case c == 534 || c == 535 || c == 538 || errors.Is(err, gomail.ErrPlainAuthNotSupported) || strings.Contains(msg, "SMTP AUTH"):
		return fmt.Sprintf("auth failed for username %q (check username and password_file): %s", username, msg)
	case strings.Contains(msg, "dial failed") && c == 0 && errors.As(err, &netErr):
		return "network: cannot reach the relay (check smtp host:port and the firewall): " + msg
	}
	var se *gomail.SendError
	if errors.As(err, &se) {
		switch se.Reason {
		case gomail.ErrSMTPMailFrom:
			return "the relay refused the sender (check from): " + msg
		case gomail.ErrSMTPRcptTo:
			return "the relay refused a recipient (check to): " + msg
		}
	}
	return msg
}
