package harness_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passerelle/passerelle/tests/harness"
)

// buildFakeBridge compiles testdata/fakebridge, a stand-in for the passerelle binary.
func buildFakeBridge(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fakebridge")
	out, err := exec.Command("go", "build", "-o", bin, "./testdata/fakebridge").CombinedOutput()
	if err != nil {
		t.Fatalf("building fakebridge: %v\n%s", err, out)
	}
	return bin
}

func TestBridgeProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildFakeBridge(t)
	dir := t.TempDir()
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	regPath := filepath.Join(dir, "registration.yaml")
	logPath := filepath.Join(dir, "bridge.log")
	params := harness.BridgeConfigParams{HomeserverURL: "http://127.0.0.1:1", HomeserverDomain: "hs.test", Port: port}
	if err := harness.WriteBridgeConfig(cfgPath, params); err != nil {
		t.Fatal(err)
	}
	if err := harness.GenerateRegistration(ctx, bin, cfgPath, regPath); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(regPath); err != nil {
		t.Fatalf("registration not written: %v", err)
	}

	b, err := harness.StartBridge(ctx, bin, cfgPath, regPath, logPath)
	if err != nil {
		t.Fatal(err)
	}
	pid := b.Pid()
	b.Stop()
	if !b.Exited() {
		t.Fatal("bridge still running after Stop")
	}
	if !strings.Contains(b.LogTail(10), "stopping on SIGTERM") {
		t.Errorf("log tail lacks the SIGTERM line:\n%s", b.LogTail(10))
	}

	// A restart appends to the same log; Kill ends it hard.
	b, err = harness.StartBridge(ctx, bin, cfgPath, regPath, logPath)
	if err != nil {
		t.Fatal(err)
	}
	if b.Pid() == pid {
		t.Errorf("restarted bridge has the old pid %d", pid)
	}
	b.Kill()
	if err := syscall.Kill(b.Pid(), 0); err == nil {
		t.Errorf("process %d still exists after Kill", b.Pid())
	}
	if tail := b.LogTail(100); strings.Count(tail, "fakebridge: listening") != 2 {
		t.Errorf("log should hold both runs:\n%s", tail)
	}

	// A bridge that exits during start fails fast with its log tail.
	params.CommandPrefix = "!crash"
	if err := harness.WriteBridgeConfig(cfgPath, params); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = harness.StartBridge(ctx, bin, cfgPath, regPath, logPath)
	if err == nil || !strings.Contains(err.Error(), "crashing as asked") {
		t.Fatalf("StartBridge of a crashing bridge: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("crash was noticed only after %s", d)
	}
}
