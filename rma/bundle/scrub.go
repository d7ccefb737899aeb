package bundle

import "github.com/hsm-agent/hsm-agent/agent/config"

// Scrubber removes secrets from free text with exactly the rules bundles
// apply (known secrets in every encoding, private keys, bearer tokens,
// URL credentials, secret-looking flags and assignments, diagnostics.redact
// patterns). Ticket text goes through it before it leaves the host, so a
// secret a bundle would hide never reaches a desk another way.
type Scrubber struct{ r *redactor }

// NewScrubber compiles the rules for secrets and the diagnostics.redact
// patterns.
func NewScrubber(secrets []config.Secret, patterns []string) (*Scrubber, error) {
	r, err := newRedactor(revealAll(secrets), patterns, nil)
	if err != nil {
		return nil, err
	}
	return &Scrubber{r: r}, nil
}

// Scrub returns text with every secret replaced by Redacted.
func (s *Scrubber) Scrub(text string) string { return s.r.scrub(text) }

// revealAll returns the non-empty secrets in plain text, for the redactor.
func revealAll(secrets []config.Secret) []string {
	plain := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if s.Reveal() != "" {
			plain = append(plain, s.Reveal())
		}
	}
	return plain
}
