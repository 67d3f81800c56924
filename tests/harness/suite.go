package harness

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// Suite is what one test package's bridge variants share: the bridge binary, the
// loopback port every variant listens on, and a homeserver that knows the bridge's
// registration (Stack) and outlives the variants.
type Suite struct {
	*Stack
	Port int
}

// RunSuite is a test package's TestMain body: it builds the bridge with tags, starts
// the stack for params (Port is filled in; the connectors' settings may be placeholders,
// as the registration does not depend on them), lets setup start what the package also
// needs (its returned func stops it), runs the tests and stops everything. A failed run
// keeps its logs and prints where. It exits the process.
func RunSuite(m *testing.M, name string, tags []string, params BridgeConfigParams,
	setup func(ctx context.Context, s *Suite) (stop func(), err error)) {
	code, err := runSuite(m, name, tags, params, setup)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s setup failed: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runSuite(m *testing.M, name string, tags []string, params BridgeConfigParams,
	setup func(ctx context.Context, s *Suite) (func(), error)) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "passerelle-"+name+"-")
	if err != nil {
		return 0, err
	}
	bin, err := BuildBridge(ctx, tags...)
	if err != nil {
		return 0, err
	}
	s := &Suite{}
	if s.Port, err = FreePort(); err != nil {
		return 0, err
	}
	params.Port = s.Port
	if s.Stack, err = StartStack(ctx, dir, bin, params); err != nil {
		return 0, err
	}
	defer s.HS.Stop()
	stop, err := setup(ctx, s)
	if err != nil {
		return 0, err
	}
	if stop != nil {
		defer stop()
	}
	code := m.Run()
	if code != 0 {
		// Keep the logs of a failed run for a look.
		fmt.Fprintf(os.Stderr, "%s logs kept in %s\n--- dendrite log tail ---\n%s\n", name, dir, s.HS.LogTail(40))
	} else {
		defer os.RemoveAll(dir)
	}
	return code, nil
}
