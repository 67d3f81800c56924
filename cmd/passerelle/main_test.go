package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix/appservice"

	"github.com/passerelle/passerelle/bridge/config"
	"github.com/passerelle/passerelle/registration"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// oneLine checks that stderr is exactly one "passerelle: ..." line.
func oneLine(t *testing.T, stderr string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "passerelle: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr is not one 'passerelle:' line: %q", stderr)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, "version")
	if code != 0 || out != "passerelle "+version+"\n" {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"-x"}, {"generate-config", "-nope"}, {"version", "extra"}, {"generate-registration", "a", "b"}} {
		code, _, stderr := runCmd(t, args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		if !strings.Contains(stderr, "Usage:") {
			t.Errorf("%q: no usage in %q", args, stderr)
		}
	}
	if code, out, _ := runCmd(t, "help"); code != 0 || !strings.Contains(out, "generate-registration") {
		t.Errorf("help: %d %q", code, out)
	}
}

func TestGenerateConfig(t *testing.T) {
	code, out, stderr := runCmd(t, "generate-config")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err != nil {
		t.Fatalf("generated config does not load: %v", err)
	}

	path2 := filepath.Join(t.TempDir(), "c.yaml")
	if code, _, stderr := runCmd(t, "generate-config", "-o", path2); code != 0 {
		t.Fatalf("-o: exit %d %q", code, stderr)
	}
	if fi, err := os.Stat(path2); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("-o file: %v %v", fi, err)
	}
	// Never overwrite an existing config.
	code, _, stderr = runCmd(t, "generate-config", "-o", path2)
	if code != 1 || !strings.Contains(stderr, "already exists") {
		t.Errorf("overwrite: exit %d %q", code, stderr)
	}
	oneLine(t, stderr)
}

func setup(t *testing.T, extra string) (cfgPath, regPath string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config.Example()+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, filepath.Join(dir, "registration.yaml")
}

func TestGenerateRegistrationTwice(t *testing.T) {
	cfgPath, regPath := setup(t, "connectors:\n  irc:\n    enabled: true\n")
	code, out, stderr := runCmd(t, "generate-registration", "-c", cfgPath, "-o", regPath)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, regPath) {
		t.Errorf("output does not say where: %q", out)
	}
	first, err := os.ReadFile(regPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(regPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("registration mode %v", fi.Mode().Perm())
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.AppService.ASToken) != 64 || len(cfg.AppService.HSToken) != 64 {
		t.Fatalf("tokens not written back into the config")
	}
	reg, err := appservice.LoadRegistration(regPath)
	if err != nil {
		t.Fatal(err)
	}
	if reg.AppToken != cfg.AppService.ASToken || reg.ServerToken != cfg.AppService.HSToken {
		t.Error("registration tokens differ from the config's")
	}
	if err := registration.Check(cfg, reg); err != nil {
		t.Error(err)
	}
	if len(reg.Namespaces.UserIDs) != 2 {
		t.Errorf("user namespaces = %v", reg.Namespaces.UserIDs)
	}
	cfgBefore, _ := os.ReadFile(cfgPath)

	if code, _, stderr := runCmd(t, "generate-registration", "-c", cfgPath, "-o", regPath); code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}
	second, _ := os.ReadFile(regPath)
	if !bytes.Equal(first, second) {
		t.Errorf("second run changed the registration:\n%s\n---\n%s", first, second)
	}
	cfgAfter, _ := os.ReadFile(cfgPath)
	if !bytes.Equal(cfgBefore, cfgAfter) {
		t.Error("second run changed the config")
	}
}

func TestGenerateRegistrationDefaultPath(t *testing.T) {
	cfgPath, regPath := setup(t, "")
	if code, _, stderr := runCmd(t, "generate-registration", "-c", cfgPath); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(regPath); err != nil {
		t.Errorf("registration not beside the config: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	cfgPath, regPath := setup(t, "")
	data, _ := os.ReadFile(cfgPath)
	bad := strings.Replace(string(data), "  type: sqlite\n", "  type: mysql\n", 1)
	if err := os.WriteFile(cfgPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"generate-registration", "-c", cfgPath, "-o", regPath},
		{"-c", cfgPath, "-r", regPath},
	} {
		code, _, stderr := runCmd(t, args...)
		if code != 1 {
			t.Errorf("%q: exit %d, want 1", args, code)
		}
		oneLine(t, stderr)
		if !strings.Contains(stderr, "database.type") || !strings.Contains(stderr, cfgPath) {
			t.Errorf("%q: %q does not name the file and the key", args, stderr)
		}
	}
	code, _, stderr := runCmd(t, "-c", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 1 || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing config: %d %q", code, stderr)
	}
	oneLine(t, stderr)
}

func TestMissingRegistration(t *testing.T) {
	cfgPath, _ := setup(t, "")
	code, _, stderr := runCmd(t, "-c", cfgPath)
	if code != 1 || !strings.Contains(stderr, "registration.yaml: no such file") || !strings.Contains(stderr, "generate-registration") {
		t.Errorf("exit %d %q", code, stderr)
	}
	oneLine(t, stderr)
}

func TestMismatchingRegistration(t *testing.T) {
	cfgPath, regPath := setup(t, "")
	if code, _, stderr := runCmd(t, "generate-registration", "-c", cfgPath, "-o", regPath); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// Enabling a connector after generating the registration is the usual mistake.
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("connectors:\n  irc: {}\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	reg, _ := appservice.LoadRegistration(regPath)
	reg.ServerToken = "tampered-token"
	if err := registration.Write(regPath, reg); err != nil {
		t.Fatal(err)
	}

	code, _, stderr := runCmd(t, "-c", cfgPath, "-r", regPath)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	oneLine(t, stderr)
	for _, want := range []string{regPath + " disagrees with the config", "hs_token differs", `user namespace "^@irc_.*:example\\.org$" missing`, "generate-registration"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("%q does not contain %q", stderr, want)
		}
	}
	if strings.Contains(stderr, "tampered-token") {
		t.Error("token leaked")
	}
}
