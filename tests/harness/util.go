package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"time"
)

// pollInterval is how often readiness checks and lock waits retry.
const pollInterval = 100 * time.Millisecond

// FreePort returns a TCP port on 127.0.0.1 that is free right now. It is drawn below
// the kernel's ephemeral range (32768 and up on Linux): a port from that range, once
// released, is soon taken again as the local port of some outgoing connection (the
// bridge's, Dendrite's, another test package's), and the listener that meant to bind
// it then fails with "address already in use". Another process could still take the
// port before the caller binds it, but only by choosing it on purpose.
func FreePort() (int, error) {
	var b [2]byte
	for try := 0; try < 200; try++ {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := freePortLow + (int(b[0])<<8+int(b[1]))%(freePortHigh-freePortLow)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("finding a free port: none free in %d-%d", freePortLow, freePortHigh)
}

// freePortLow and freePortHigh bound the ports FreePort draws from: below the
// ephemeral range and above the well-known and commonly registered services.
const (
	freePortLow  = 20000
	freePortHigh = 32000
)

// randomHex returns n random bytes, hex encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b)
}

// sleepCtx waits d or until ctx ends, returning ctx's error in the latter case.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// waitHTTP polls url with GET until it answers 200, the process p exits, ctx ends, or
// timeout passes. The error says which, and includes the process's log tail when it
// exited.
func waitHTTP(ctx context.Context, p *process, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("building readiness request for %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if p.exited() {
			return fmt.Errorf("%w before %s answered; log tail:\n%s", p.exitErr(), url, p.logTail(40))
		}
		if err := sleepCtx(ctx, pollInterval); err != nil {
			return fmt.Errorf("waiting for %s to answer 200 (last: %s): %w; %s log tail:\n%s", url, last, err, p.name, p.logTail(40))
		}
	}
}
