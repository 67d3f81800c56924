package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// bridgeReadyTimeout bounds how long StartBridge waits for /_passerelle/ready.
const bridgeReadyTimeout = 60 * time.Second

// Bridge is a running passerelle process started by StartBridge.
type Bridge struct {
	// ReadyURL is the readiness endpoint polled at start.
	ReadyURL string
	// LogPath receives the process's stdout and stderr, appended across restarts.
	LogPath string

	proc *process
}

// StartBridge runs `bin -c configPath -r registrationPath`, appending its stdout and
// stderr to logPath, and waits up to 60 s for GET http://<appservice.listen>/_passerelle/ready
// (listen is read from the config) to return 200. If the process exits first, the
// error carries the log tail. To restart a bridge, Stop or Kill it and call
// StartBridge again with the same arguments.
func StartBridge(ctx context.Context, bin, configPath, registrationPath string, logPath string) (*Bridge, error) {
	listen, err := bridgeListen(configPath)
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("parsing appservice.listen %q in %s: %w", listen, configPath, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	b := &Bridge{
		ReadyURL: "http://" + net.JoinHostPort(host, port) + "/_passerelle/ready",
		LogPath:  logPath,
	}
	b.proc, err = startProcess("passerelle", logPath, filepath.Dir(configPath), bin, "-c", configPath, "-r", registrationPath)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, b.proc, b.ReadyURL, bridgeReadyTimeout); err != nil {
		b.proc.kill()
		return nil, fmt.Errorf("starting bridge: %w", err)
	}
	return b, nil
}

// bridgeListen reads appservice.listen from a bridge config file.
func bridgeListen(configPath string) (string, error) {
	data, err := os.ReadFile(configPath)
	if err != nil {
		return "", fmt.Errorf("reading bridge config: %w", err)
	}
	var cfg struct {
		AppService struct {
			Listen string `yaml:"listen"`
		} `yaml:"appservice"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return "", fmt.Errorf("parsing bridge config %s: %w", configPath, err)
	}
	if cfg.AppService.Listen == "" {
		return "", fmt.Errorf("bridge config %s has no appservice.listen", configPath)
	}
	return cfg.AppService.Listen, nil
}

// Kill sends SIGKILL (to the process group) and waits for the process to be reaped:
// a crash, for restart tests.
func (b *Bridge) Kill() {
	b.proc.kill()
}

// Stop sends SIGTERM and waits for a clean exit, sending SIGKILL after 15 s.
func (b *Bridge) Stop() {
	b.proc.stop(15 * time.Second)
}

// Exited reports whether the bridge process has ended.
func (b *Bridge) Exited() bool {
	return b.proc.exited()
}

// LogTail returns the last n lines of the bridge's log.
func (b *Bridge) LogTail(n int) string {
	return tailFile(b.LogPath, n)
}

// Pid is the bridge's process ID.
func (b *Bridge) Pid() int {
	return b.proc.cmd.Process.Pid
}

// WaitLog waits until the bridge's log holds a line containing every part, and returns
// it. The log is console output with colours; parts are matched against the line with
// its escape sequences removed.
func (b *Bridge) WaitLog(ctx context.Context, parts ...string) (string, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		data, err := os.ReadFile(b.LogPath)
		if err != nil {
			return "", fmt.Errorf("reading the bridge log: %w", err)
		}
		for _, line := range strings.Split(ansiEscape.ReplaceAllString(string(data), ""), "\n") {
			if containsAll(line, parts) {
				return line, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for a bridge log line with %q: %w", parts, ctx.Err())
		case <-tick.C:
		}
	}
}

// ansiEscape matches the colour sequences of console logs.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*m`)

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
