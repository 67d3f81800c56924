package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

const day = 24 * time.Hour

// ParseDuration parses a duration written as Go's time.ParseDuration accepts ("12h",
// "90m", "1h30m") or as a whole number of days ("30d").
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > int64(time.Duration(1<<63-1)/day) {
			return 0, fmt.Errorf("invalid duration %q (want e.g. 30d, 12h or 90m)", s)
		}
		return Duration(time.Duration(n) * day), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 30d, 12h or 90m)", s)
	}
	return Duration(d), nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d as "<n>d" when it is a whole number of days, otherwise as
// time.Duration does.
func (d Duration) String() string {
	td := time.Duration(d)
	if td != 0 && td%day == 0 {
		return strconv.FormatInt(int64(td/day), 10) + "d"
	}
	return td.String()
}

// UnmarshalYAML accepts a scalar such as "30d", "12h" or "90m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration like 30d, 12h or 90m, got %s", describeNode(n))
	}
	parsed, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = parsed
	return nil
}

// MarshalYAML writes d in the form String returns.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
