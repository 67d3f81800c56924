package harness

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// TCPProxy forwards loopback connections to a target. Tests put it between the bridge
// and a server so they can decide when the bridge may reconnect (Hold/Release) while
// test clients reach the server directly: a restart test then has no race between the
// bridge and the test's own client.
type TCPProxy struct {
	Addr   string
	target string
	ln     net.Listener
	mu     sync.Mutex
	held   bool
	conns  map[net.Conn]struct{}
}

// NewTCPProxy listens on a free loopback port and forwards to target.
func NewTCPProxy(target string) (*TCPProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting proxy: %w", err)
	}
	p := &TCPProxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	go p.serve()
	return p, nil
}

func (p *TCPProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if held {
			c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *TCPProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.conns, up)
		p.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}

// Hold refuses new connections (they are closed at once) until Release.
func (p *TCPProxy) Hold() { p.mu.Lock(); p.held = true; p.mu.Unlock() }

// Cut drops every open connection and refuses new ones until Release: to the client,
// the server went away (a restart, a network failure).
func (p *TCPProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = true
	for c := range p.conns {
		c.Close()
	}
}

// Release lets new connections through again.
func (p *TCPProxy) Release() { p.mu.Lock(); p.held = false; p.mu.Unlock() }

// Close stops accepting.
func (p *TCPProxy) Close() { p.ln.Close() }
