package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestBodyFilter(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(bodyFilter{w: &buf}).Level(zerolog.TraceLevel)
	body := []byte(`{"msgtype":"m.text","body":"TOP SECRET"}`)
	log.Error().Err(errors.New("connection refused")).RawJSON("req_body", body).Msg("Request failed")
	log.Warn().RawJSON("req_body", body).Msg("Request cancelled")
	log.Debug().RawJSON("req_body", body).Msg("Request completed")
	log.Info().Str("other", "kept").Msg("Unrelated")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines: %q", len(lines), buf.String())
	}
	for i, want := range []bool{false, false, true, false} {
		if got := strings.Contains(lines[i], "TOP SECRET"); got != want {
			t.Errorf("line %d contains the body = %v, want %v: %s", i, got, want, lines[i])
		}
	}
	if !strings.Contains(lines[0], `"error":"connection refused"`) || !strings.Contains(lines[0], `"req_body":"(omitted)"`) {
		t.Errorf("error line lost its other fields: %s", lines[0])
	}
	if !strings.Contains(lines[3], `"other":"kept"`) {
		t.Errorf("unrelated line changed: %s", lines[3])
	}
}
