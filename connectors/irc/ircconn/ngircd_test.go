package ircconn

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ngircdTemplate is the shared ngircd config template (placeholders @DIR@
// and @PORT@).
const ngircdTemplate = "../../../../shared/testing/ngircd.conf.in"

// startNgircd runs a private ngircd for the test and returns its address.
// It fails (does not skip) when ngircd is missing: CI installs it, and a
// developer should too (Debian/Ubuntu: apt-get install ngircd). The server is
// killed when the test ends.
func startNgircd(t testing.TB) (addr string) {
	t.Helper()
	bin, err := exec.LookPath("ngircd")
	if err != nil {
		t.Fatalf("ngircd is not installed (apt-get install ngircd); CI installs it and this test requires it: %v", err)
	}
	tmpl, err := os.ReadFile(ngircdTemplateFile(t))
	if err != nil {
		t.Fatalf("reading ngircd config template: %v", err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil { // ngircd drops root privileges to nobody
		t.Fatalf("chmod %s: %v", dir, err)
	}
	port := freePort(t)
	conf := strings.NewReplacer("@DIR@", dir, "@PORT@", strconv.Itoa(port)).Replace(string(tmpl))
	confPath := filepath.Join(dir, "ngircd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatalf("writing ngircd config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-n", "-f", confPath)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("ngircd stdout: %v", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ngircd: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})

	// ngircd prints "Now listening on [127.0.0.1]:PORT" once the port is open.
	ready := make(chan struct{})
	var output strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled {
				output.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "Now listening on") {
					signalled = true
					close(ready)
				}
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("ngircd did not start listening")
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func ngircdTemplateFile(t testing.TB) string {
	if p := os.Getenv("NGIRCD_CONF_TEMPLATE"); p != "" {
		return p
	}
	if _, err := os.Stat(ngircdTemplate); err == nil {
		return ngircdTemplate
	}
	return "/work/shared/testing/ngircd.conf.in"
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
