package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// IRCServer is a real IRC server from Debian's packages (ngircd or inspircd), started
// from the templates in shared/testing with a loopback port of its own.
type IRCServer struct {
	Kind string
	Addr string
	Port int
	Dir  string
	proc *process
	args []string
	bin  string
}

// StartIRCServer starts "ngircd" or "inspircd" in dir and waits until it accepts
// connections. The binaries come from apt (scripts/test.sh installs them).
func StartIRCServer(ctx context.Context, kind, dir string) (*IRCServer, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	if err = os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating IRC server dir: %w", err)
	}
	// The templates are copies of shared/testing's, kept in the repo so a clone alone
	// runs the tests.
	tpl, err := os.ReadFile(filepath.Join(root, "tests", "harness", "testdata", kind+".conf.in"))
	if err != nil {
		return nil, fmt.Errorf("reading %s config template: %w", kind, err)
	}
	conf := strings.NewReplacer("@DIR@", dir, "@PORT@", strconv.Itoa(port)).Replace(string(tpl))
	confPath := filepath.Join(dir, kind+".conf")
	if err = os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("writing %s config: %w", kind, err)
	}
	s := &IRCServer{Kind: kind, Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir}
	switch kind {
	case "ngircd":
		s.bin, s.args = "ngircd", []string{"-n", "-f", confPath}
	case "inspircd":
		s.bin, s.args = "inspircd", []string{"--config=" + confPath, "--nofork", "--runasroot"}
	default:
		return nil, fmt.Errorf("unknown IRC server kind %q", kind)
	}
	if s.bin, err = findIRCServer(s.bin); err != nil {
		return nil, err
	}
	return s, s.Start(ctx)
}

func findIRCServer(name string) (string, error) {
	for _, p := range []string{"/usr/sbin/" + name, "/usr/bin/" + name} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s is not installed: run `apt-get install %s` (scripts/test.sh does)", name, name)
}

// Start (re)starts the server process on its port.
func (s *IRCServer) Start(ctx context.Context) error {
	proc, err := startProcess(s.Kind, filepath.Join(s.Dir, s.Kind+".log"), s.Dir, s.bin, s.args...)
	if err != nil {
		return err
	}
	s.proc = proc
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if proc.exited() {
			return fmt.Errorf("%s exited at start: %s", s.Kind, proc.logTail(20))
		}
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	proc.kill()
	return fmt.Errorf("%s did not open %s: %s", s.Kind, s.Addr, proc.logTail(20))
}

// Stop stops the server (SIGTERM, then SIGKILL).
func (s *IRCServer) Stop() {
	if s.proc != nil {
		s.proc.stop(5 * time.Second)
	}
}

// Restart stops the server and starts it again on the same port.
func (s *IRCServer) Restart(ctx context.Context) error {
	s.Stop()
	return s.Start(ctx)
}

// LogTail returns the end of the server's output.
func (s *IRCServer) LogTail(n int) string { return s.proc.logTail(n) }
