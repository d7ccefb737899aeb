package health

import (
	"fmt"
	"strconv"
	"strings"
)

// CompareVersions compares dotted numeric firmware versions component by
// component (-1, 0, 1); a missing component counts as 0, so "12.6" equals
// "12.6.0" and "12.60" is newer than "12.8". It is the one version order of
// the project (the firmware policy, the fleet's firmware).
func CompareVersions(a, b string) (int, error) {
	pa, err := parseVersion(a)
	if err != nil {
		return 0, err
	}
	pb, err := parseVersion(b)
	if err != nil {
		return 0, err
	}
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y uint64
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		switch {
		case x < y:
			return -1, nil
		case x > y:
			return 1, nil
		}
	}
	return 0, nil
}

func parseVersion(v string) ([]uint64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, fmt.Errorf("empty version")
	}
	parts := strings.Split(v, ".")
	out := make([]uint64, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("version %q: component %q is not a number: %w", v, p, err)
		}
		out[i] = n
	}
	return out, nil
}
