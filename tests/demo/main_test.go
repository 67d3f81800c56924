package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemoOnce runs the README's demo command end to end, so it stays true.
func TestDemoOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, true, t.TempDir(), strings.NewReader(""), &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{"network → Matrix", "not bridged", "Matrix → network: account \"demo-account\"", "IRC → Matrix", "Matrix → IRC", "Demo complete."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
