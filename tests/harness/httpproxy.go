package harness

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// HTTPProxy forwards HTTP requests to a server (the homeserver) and lets a test make
// that server slow: each request waits Delay before it is forwarded, and requests a
// Stall rule matches are held until their client gives up, as a homeserver holds the
// download of a file whose upload never finishes.
type HTTPProxy struct {
	// URL is the proxy's address, for the bridge's config.
	URL string
	srv *http.Server
	mu  sync.Mutex
	// delay and stall are what the test set last.
	delay time.Duration
	stall func(*http.Request) bool
	// stalled counts requests held so far.
	stalled int
}

// NewHTTPProxy listens on a free loopback port and forwards to target.
func NewHTTPProxy(target string) (*HTTPProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("parsing proxy target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting HTTP proxy: %w", err)
	}
	p := &HTTPProxy{URL: "http://" + ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // long polls and streamed downloads pass as they come
	// The server being down is what restart tests cause: answer as a gateway does,
	// without logging each refused request.
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		delay, stall := p.delay, p.stall
		held := stall != nil && stall(r)
		if held {
			p.stalled++
		}
		p.mu.Unlock()
		if held {
			<-r.Context().Done()
			return
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: time.Minute}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// SetDelay makes every request from now on wait d before it is forwarded (0: none).
func (p *HTTPProxy) SetDelay(d time.Duration) { p.mu.Lock(); p.delay = d; p.mu.Unlock() }

// Stall holds every request match accepts until its client gives up (nil: none).
func (p *HTTPProxy) Stall(match func(*http.Request) bool) {
	p.mu.Lock()
	p.stall = match
	p.mu.Unlock()
}

// Stalled is how many requests have been held.
func (p *HTTPProxy) Stalled() int { p.mu.Lock(); defer p.mu.Unlock(); return p.stalled }

// Close stops the proxy and drops its connections.
func (p *HTTPProxy) Close() { _ = p.srv.Close() }
