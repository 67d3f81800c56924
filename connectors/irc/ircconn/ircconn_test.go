package ircconn

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"github.com/ergochat/irc-go/ircreader"
	"github.com/rs/zerolog"
)

// watchdog bounds every wait so a broken test fails instead of hanging. It
// is never used to order events.
const watchdog = 10 * time.Second

// testServer is a scripted in-process IRC server: the test goroutine
// accepts connections and reads and writes lines itself.
type testServer struct {
	t     testing.TB
	ln    net.Listener
	conns chan *peer
	mu    sync.Mutex
	all   []*peer
}

func newTestServer(t testing.TB) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, ln: ln, conns: make(chan *peer, 64)}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			p := newPeer(t, nc)
			s.mu.Lock()
			s.all = append(s.all, p)
			s.mu.Unlock()
			s.conns <- p
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range s.all {
			p.conn.Close()
		}
	})
	return s
}

func (s *testServer) addr() string { return s.ln.Addr().String() }

func (s *testServer) accept() *peer {
	s.t.Helper()
	select {
	case p := <-s.conns:
		return p
	case <-time.After(watchdog):
		s.t.Fatal("watchdog: no connection")
	}
	return nil
}

// peer is the server side of one client connection. A reader goroutine
// parses lines into a channel and closes the connection after QUIT, like a
// real server.
type peer struct {
	t     testing.TB
	conn  net.Conn
	lines chan ircmsg.Message
}

func newPeer(t testing.TB, nc net.Conn) *peer {
	p := &peer{t: t, conn: nc, lines: make(chan ircmsg.Message, 4096)}
	go func() {
		defer close(p.lines)
		var r ircreader.Reader
		r.Initialize(nc, 512, 16384)
		for {
			line, err := r.ReadLine()
			if err != nil {
				return
			}
			msg, err := ircmsg.ParseLine(string(line))
			if err != nil {
				continue
			}
			p.lines <- msg
			if msg.Command == "QUIT" {
				nc.Write([]byte("ERROR :Closing Link: (Quit: " + lastParam(&msg) + ")\r\n"))
				nc.Close()
				return
			}
		}
	}()
	return p
}

func (p *peer) next() ircmsg.Message {
	p.t.Helper()
	select {
	case msg, ok := <-p.lines:
		if !ok {
			p.t.Fatal("client connection closed")
		}
		return msg
	case <-time.After(watchdog):
		p.t.Fatal("watchdog: no line from client")
	}
	return ircmsg.Message{}
}

func (p *peer) expect(command string, params ...string) ircmsg.Message {
	p.t.Helper()
	msg := p.next()
	if msg.Command != command || (params != nil && !slices.Equal(msg.Params, params)) {
		p.t.Fatalf("client sent %s %q, want %s %q", msg.Command, msg.Params, command, params)
	}
	return msg
}

// skipTo reads lines until one with command.
func (p *peer) skipTo(command string) ircmsg.Message {
	p.t.Helper()
	for {
		if msg := p.next(); msg.Command == command {
			return msg
		}
	}
}

func (p *peer) send(lines ...string) {
	p.t.Helper()
	for _, l := range lines {
		if _, err := p.conn.Write([]byte(l + "\r\n")); err != nil {
			p.t.Fatalf("server write: %v", err)
		}
	}
}

// handshake plays a server offering only multi-prefix and welcomes nick.
func (p *peer) handshake(nick string) {
	p.t.Helper()
	p.expect("CAP", "LS", "302")
	p.expect("NICK", nick)
	p.expect("USER")
	p.send(":srv CAP * LS :multi-prefix")
	p.expect("CAP", "REQ", "multi-prefix")
	p.send(":srv CAP " + nick + " ACK :multi-prefix")
	p.expect("CAP", "END")
	p.welcome(nick)
}

func (p *peer) welcome(nick string) {
	p.send(":srv 001 "+nick+" :Welcome to the test network",
		":srv 005 "+nick+" CASEMAPPING=rfc1459 CHANTYPES=# PREFIX=(ov)@+ NICKLEN=30 :are supported by this server",
		":srv 422 "+nick+" :MOTD File is missing")
}

type events chan Event

// newTestConn starts a Conn with test defaults; setup may adjust it before
// Start. It is stopped at the end of the test.
func newTestConn(t testing.TB, cfg Config, setup func(*Conn)) (*Conn, events) {
	t.Helper()
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 10 * time.Millisecond
		cfg.MaxBackoff = 20 * time.Millisecond
	}
	if cfg.Caps == nil {
		cfg.Caps = DefaultCaps()
	}
	cfg.Log = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.TraceLevel)
	if _, ok := t.(*testing.B); ok {
		cfg.Log = zerolog.Nop()
	}
	ch := make(events, 10000)
	c := New(cfg, func(ctx context.Context, ev Event) { ch <- ev })
	if setup != nil {
		setup(c)
	}
	c.Start(context.Background())
	t.Cleanup(func() { c.Stop("test over") })
	return c, ch
}

// waitFor returns the next event of kind, skipping Message events (and
// failing on any other kind in between).
func (ch events) waitFor(t testing.TB, kind EventKind) Event {
	t.Helper()
	for {
		select {
		case ev := <-ch:
			if ev.Kind == kind {
				return ev
			}
			if ev.Kind != Message {
				t.Fatalf("got %s event (err %v) while waiting for %s", ev.Kind, ev.Err, kind)
			}
		case <-time.After(watchdog):
			t.Fatalf("watchdog: no %s event", kind)
		}
	}
}

// nextMessage returns the next Message event with command.
func (ch events) nextMessage(t testing.TB, command string) ircmsg.Message {
	t.Helper()
	for {
		ev := ch.waitFor(t, Message)
		if ev.Msg.Command == command {
			return ev.Msg
		}
	}
}

func TestCapNegotiationAndSASL(t *testing.T) {
	srv := newTestServer(t)
	c, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice", User: "al", RealName: "Alice A",
		ServerPassword: "serverpw", SASLUser: "alice", SASLPassword: "s3cret"}, nil)
	p := srv.accept()
	p.expect("PASS", "serverpw")
	p.expect("CAP", "LS", "302")
	p.expect("NICK", "alice")
	p.expect("USER", "al", "0", "*", "Alice A")
	// multi-line LS: "*" marks continuation
	p.send(":srv CAP * LS * :multi-prefix sasl=PLAIN,EXTERNAL unknown-cap",
		":srv CAP * LS :server-time message-tags draft/relaymsg=/")
	req := p.expect("CAP")
	if req.Params[0] != "REQ" {
		t.Fatalf("want CAP REQ, got %q", req.Params)
	}
	got := strings.Fields(lastParam(&req))
	want := []string{"server-time", "message-tags", "multi-prefix", "sasl", "draft/relaymsg"}
	if !slices.Equal(got, want) {
		t.Fatalf("CAP REQ %q, want %q", got, want)
	}
	p.send(":srv CAP * ACK :server-time message-tags multi-prefix sasl draft/relaymsg")
	p.expect("AUTHENTICATE", "PLAIN")
	p.send("AUTHENTICATE +")
	auth := p.expect("AUTHENTICATE")
	if wantAuth := base64.StdEncoding.EncodeToString([]byte("alice\x00alice\x00s3cret")); auth.Params[0] != wantAuth {
		t.Fatalf("AUTHENTICATE payload %q, want %q", auth.Params[0], wantAuth)
	}
	p.send(":srv 900 alice alice!al@host alice :You are now logged in as alice",
		":srv 903 alice :SASL authentication successful")
	p.expect("CAP", "END")
	p.send(":srv 001 alice :Welcome",
		":srv 005 alice CASEMAPPING=ascii CHANTYPES=#& LINELEN=1024 NETWORK=Test\\x20Net :are supported",
		":srv 375 alice :- MOTD",
		":srv 376 alice :End of MOTD")
	conn := ev.waitFor(t, Connected)
	if conn.Nick != "alice" || !c.Connected() {
		t.Fatalf("Connected event nick %q, Connected() %v", conn.Nick, c.Connected())
	}
	for _, cp := range want {
		if !c.HasCap(cp) {
			t.Errorf("HasCap(%q) = false", cp)
		}
	}
	if c.HasCap("unknown-cap") {
		t.Error("HasCap(unknown-cap) = true")
	}
	if v, _ := c.ISupport("casemapping"); v != "ascii" {
		t.Errorf("CASEMAPPING = %q", v)
	}
	if v, _ := c.ISupport("NETWORK"); v != "Test Net" {
		t.Errorf("NETWORK = %q", v)
	}
	if c.lineLimit() != 1024 {
		t.Errorf("lineLimit = %d, want 1024 from LINELEN", c.lineLimit())
	}
	// ascii casemapping: [ and { differ
	if !c.IsMe("ALICE") || c.IsMe("alice_") {
		t.Error("IsMe wrong under ascii casemapping")
	}
}

func TestSASLFailureIsFatal(t *testing.T) {
	srv := newTestServer(t)
	c, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice", SASLUser: "alice", SASLPassword: "wrong"}, nil)
	p := srv.accept()
	p.skipTo("USER")
	p.send(":srv CAP * LS :sasl")
	p.expect("CAP", "REQ", "sasl")
	p.send(":srv CAP * ACK :sasl")
	p.expect("AUTHENTICATE", "PLAIN")
	p.send("AUTHENTICATE +")
	p.expect("AUTHENTICATE")
	p.send(":srv 904 alice :SASL authentication failed")
	fatal := ev.waitFor(t, Fatal)
	if !errors.Is(fatal.Err, ErrSASLFailed) || !strings.Contains(fatal.Err.Error(), "904") {
		t.Fatalf("Fatal err = %v, want ErrSASLFailed mentioning 904", fatal.Err)
	}
	select {
	case <-c.Done():
	case <-time.After(watchdog):
		t.Fatal("watchdog: Conn did not finish after Fatal")
	}
	select {
	case p2 := <-srv.conns:
		t.Fatalf("reconnected after Fatal: %v", p2.conn.RemoteAddr())
	default:
	}
}

func TestFatalServerRefusals(t *testing.T) {
	tests := []struct {
		name string
		line string
		want error
	}{
		{"465 banned", ":srv 465 alice :You are banned from this server", ErrBanned},
		{"ERROR K-Lined", "ERROR :Closing Link: alice[127.0.0.1] (K-Lined)", ErrBanned},
		{"ERROR G-Lined", "ERROR :Closing Link: 127.0.0.1 (G-Lined: spam)", ErrBanned},
		{"464 password", ":srv 464 * :Password incorrect", ErrBadPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t)
			_, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice"}, nil)
			p := srv.accept()
			p.skipTo("USER")
			p.send(tt.line)
			fatal := ev.waitFor(t, Fatal)
			if !errors.Is(fatal.Err, tt.want) {
				t.Fatalf("Fatal err = %v, want %v", fatal.Err, tt.want)
			}
		})
	}
}

func TestThrottleBacksOffLong(t *testing.T) {
	srv := newTestServer(t)
	_, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice", MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Hour}, nil)
	p := srv.accept()
	p.skipTo("USER")
	p.send("ERROR :Closing Link: 127.0.0.1 (Throttled: Reconnecting too fast)")
	p.conn.Close()
	d := ev.waitFor(t, Disconnected)
	if !errors.Is(d.Err, ErrThrottled) {
		t.Fatalf("Disconnected err = %v, want ErrThrottled", d.Err)
	}
	if d.RetryIn < 30*time.Minute {
		t.Fatalf("RetryIn = %s after throttle, want >= 30m (half of MaxBackoff)", d.RetryIn)
	}
}

func TestNickCollision(t *testing.T) {
	srv := newTestServer(t)
	c, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice"}, nil)
	p := srv.accept()
	p.expect("CAP", "LS", "302")
	p.expect("NICK", "alice")
	p.expect("USER")
	p.send(":srv 433 * alice :Nickname is already in use")
	p.expect("NICK", "alice_")
	p.send(":srv CAP * LS :")
	p.expect("CAP", "END")
	p.welcome("alice_")
	nc := ev.waitFor(t, NickChanged)
	if nc.Nick != "alice_" {
		t.Fatalf("NickChanged to %q, want alice_", nc.Nick)
	}
	if conn := ev.waitFor(t, Connected); conn.Nick != "alice_" || c.Nick() != "alice_" {
		t.Fatalf("Connected as %q (Nick() %q), want alice_", conn.Nick, c.Nick())
	}
	// after registration, 433 is the caller's business and the Conn does not
	// try to reclaim "alice"
	p.send(":srv 433 alice_ alice :Nickname is already in use", ":srv NOTICE alice_ :marker")
	if m := ev.nextMessage(t, "433"); m.Params[1] != "alice" {
		t.Fatalf("433 params %q", m.Params)
	}
	ev.nextMessage(t, "NOTICE")
	// a server-forced nick change is reported
	p.send(":alice_!u@h NICK :Guest42")
	if nc := ev.waitFor(t, NickChanged); nc.Nick != "Guest42" || nc.Msg.Command != "NICK" || !c.IsMe("guest42") {
		t.Fatalf("NickChanged %+v", nc)
	}
}

func TestNickCandidatesExhausted(t *testing.T) {
	var got []string
	for i := range 6 {
		got = append(got, nickCandidate("bob", i))
	}
	if want := []string{"bob", "bob_", "bob__", "bob1", "bob2", "bob3"}; !slices.Equal(got, want) {
		t.Fatalf("candidates %q, want %q", got, want)
	}
	srv := newTestServer(t)
	_, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "bob"}, nil)
	p := srv.accept()
	for {
		msg := p.next()
		if msg.Command == "NICK" {
			p.send(":srv 433 * " + msg.Params[0] + " :Nickname is already in use")
			if msg.Params[0] == nickCandidate("bob", maxNickAttempts-1) {
				break
			}
		}
	}
	if fatal := ev.waitFor(t, Fatal); !errors.Is(fatal.Err, ErrNickUnavailable) {
		t.Fatalf("Fatal err = %v, want ErrNickUnavailable", fatal.Err)
	}
}

func TestPingAnswered(t *testing.T) {
	srv := newTestServer(t)
	_, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice"}, nil)
	p := srv.accept()
	p.handshake("alice")
	ev.waitFor(t, Connected)
	p.send("PING :irc.example.net-123", ":srv NOTICE alice :after ping")
	p.expect("PONG", "irc.example.net-123")
	// PING is not passed to the handler
	if m := ev.waitFor(t, Message); m.Msg.Command != "NOTICE" {
		t.Fatalf("handler got %s, want the NOTICE after PING", m.Msg.Command)
	}
}

func TestClientKeepalive(t *testing.T) {
	srv := newTestServer(t)
	_, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice", PingInterval: 20 * time.Millisecond, PingTimeout: 40 * time.Millisecond}, nil)
	p := srv.accept()
	p.handshake("alice")
	ev.waitFor(t, Connected)
	ping := p.skipTo("PING")
	p.send(":srv PONG srv :" + lastParam(&ping))
	// then stay silent: the client must give up with a ping timeout
	p.skipTo("PING")
	d := ev.waitFor(t, Disconnected)
	if !errors.Is(d.Err, ErrPingTimeout) {
		t.Fatalf("Disconnected err = %v, want ErrPingTimeout", d.Err)
	}
}

func TestReconnectAfterServerClose(t *testing.T) {
	srv := newTestServer(t)
	c, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice"}, nil)
	p := srv.accept()
	p.handshake("alice")
	ev.waitFor(t, Connected)
	p.conn.Close()
	d := ev.waitFor(t, Disconnected)
	if d.Err == nil || errors.Is(d.Err, ErrStopped) || d.RetryIn < 10*time.Millisecond || d.RetryIn > 20*time.Millisecond {
		t.Fatalf("Disconnected %+v, want an error and RetryIn in [10ms, 20ms]", d)
	}
	p2 := srv.accept()
	p2.handshake("alice")
	ev.waitFor(t, Connected)
	if !c.Connected() || !c.HasCap("multi-prefix") {
		t.Fatal("not connected with caps after reconnect")
	}
	// Stop sends QUIT with the reason and reports the final disconnect
	go c.Stop("see you")
	p2.skipTo("QUIT")
	if d := ev.waitFor(t, Disconnected); !errors.Is(d.Err, ErrStopped) {
		t.Fatalf("final Disconnected err = %v, want ErrStopped", d.Err)
	}
	<-c.Done()
}

func TestStopQuitReason(t *testing.T) {
	srv := newTestServer(t)
	c, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice"}, nil)
	p := srv.accept()
	p.handshake("alice")
	ev.waitFor(t, Connected)
	c.Stop("bye\r\nPRIVMSG #x :injected")
	q := p.skipTo("QUIT")
	if lastParam(&q) != "bye  PRIVMSG #x :injected" {
		t.Fatalf("QUIT reason %q", lastParam(&q))
	}
	if err := c.Send(context.Background(), "PRIVMSG", "#x", "late"); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send after Stop: %v", err)
	}
}

func TestSlowHandlerDoesNotBlockPing(t *testing.T) {
	srv := newTestServer(t)
	release := make(chan struct{})
	blocked := make(chan struct{})
	var mu sync.Mutex
	var texts []string
	cfg := Config{Addr: srv.addr(), Nick: "alice", MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Log: zerolog.New(zerolog.NewTestWriter(t))}
	done := make(chan struct{})
	c := New(cfg, func(ctx context.Context, ev Event) {
		if ev.Kind != Message || ev.Msg.Command != "PRIVMSG" {
			return
		}
		text := lastParam(&ev.Msg)
		if text == "block" {
			close(blocked)
			<-release
		}
		mu.Lock()
		texts = append(texts, text)
		mu.Unlock()
		if text == "last" {
			close(done)
		}
	})
	c.Start(context.Background())
	t.Cleanup(func() { c.Stop("bye") })
	p := srv.accept()
	p.handshake("alice")
	p.send(":bob!b@h PRIVMSG alice :block")
	<-blocked
	const n = 500
	for i := range n {
		p.send(fmt.Sprintf(":bob!b@h PRIVMSG alice :msg %d", i))
	}
	p.send("PING :while-blocked")
	p.expect("PONG", "while-blocked") // answered while the handler is stuck
	p.send(":bob!b@h PRIVMSG alice :last")
	close(release)
	select {
	case <-done:
	case <-time.After(watchdog):
		t.Fatal("watchdog: handler did not get all messages")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(texts) != n+2 {
		t.Fatalf("handler got %d messages, want %d", len(texts), n+2)
	}
	for i := range n {
		if want := fmt.Sprintf("msg %d", i); texts[i+1] != want {
			t.Fatalf("message %d = %q, want %q (order lost)", i, texts[i+1], want)
		}
	}
}

// fakeClock lets the flood-control test add tokens without sleeping.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	added  chan struct{}
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_000_000, 0), added: make(chan struct{}, 100)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Timer(d time.Duration) (<-chan time.Time, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	f.timers = append(f.timers, fakeTimer{at: f.now.Add(d), ch: ch})
	f.added <- struct{}{}
	return ch, func() {}
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.timers[:0]
	for _, tm := range f.timers {
		if !tm.at.After(f.now) {
			tm.ch <- f.now
		} else {
			kept = append(kept, tm)
		}
	}
	f.timers = kept
}

func TestLimiterTokens(t *testing.T) {
	clk := newFakeClock()
	l := newLimiterClock(2, 3, clk)
	ctx := context.Background()
	for i := range 3 {
		if w := l.reserve(); w != 0 {
			t.Fatalf("burst token %d: wait %s", i, w)
		}
	}
	if w := l.reserve(); w != 500*time.Millisecond {
		t.Fatalf("4th token wait = %s, want 500ms at 2/s", w)
	}
	if w := l.reserve(); w != time.Second {
		t.Fatalf("5th token wait = %s, want 1s (queued behind the 4th)", w)
	}
	// a cancelled waiter gives its token back
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Wait(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with cancelled ctx: %v", err)
	}
	<-clk.added // the Wait above registered a timer
	clk.Advance(time.Second)
	if w := l.reserve(); w != 500*time.Millisecond {
		t.Fatalf("after 1s, next wait = %s, want 500ms", w)
	}
	var nilLimiter *Limiter
	if err := nilLimiter.Wait(ctx); err != nil {
		t.Fatalf("nil Limiter: %v", err)
	}
	if w := newLimiterClock(0, 1, clk).reserve(); w != 0 {
		t.Fatalf("unlimited limiter waits %s", w)
	}
}

func TestFloodControlOrdersAndPaces(t *testing.T) {
	srv := newTestServer(t)
	clk := newFakeClock()
	c, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice", MessagesPerSecond: 1, Burst: 3},
		func(c *Conn) { c.flood = newLimiterClock(1, 3, clk) })
	p := srv.accept()
	p.handshake("alice")
	ev.waitFor(t, Connected)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if err := c.Send(ctx, "PRIVMSG", "#c", fmt.Sprint("line ", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		p.expect("PRIVMSG", "#c", fmt.Sprint("line ", i))
	}
	sent := make(chan error, 2)
	go func() { sent <- c.Send(ctx, "PRIVMSG", "#c", "line 4") }()
	<-clk.added // the 4th Send is waiting for a token
	// the 5th queues behind the 4th without taking the token slot
	go func() { sent <- c.Send(ctx, "PRIVMSG", "#c", "line 5") }()
	select {
	case err := <-sent:
		t.Fatalf("a Send returned (%v) before a token was added", err)
	default:
	}
	clk.Advance(time.Second) // one token
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	p.expect("PRIVMSG", "#c", "line 4")
	<-clk.added // the 5th now waits for its own token
	select {
	case err := <-sent:
		t.Fatalf("5th Send returned (%v) before its token", err)
	default:
	}
	clk.Advance(time.Second)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	p.expect("PRIVMSG", "#c", "line 5")

	// a Send waiting for a token fails when the connection drops
	go func() { sent <- c.Send(ctx, "PRIVMSG", "#c", "line 6") }()
	<-clk.added
	p.conn.Close()
	if err := <-sent; !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send during disconnect: %v, want ErrNotConnected", err)
	}
}

func TestSendValidation(t *testing.T) {
	srv := newTestServer(t)
	c, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice", MessagesPerSecond: -1}, nil)
	ctx := context.Background()
	if err := c.Send(ctx, "PRIVMSG", "#c", "early"); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send before Connected: %v, want ErrNotConnected", err)
	}
	p := srv.accept()
	p.handshake("alice")
	ev.waitFor(t, Connected)

	// "PRIVMSG #c :" is 12 bytes, plus CRLF: 498 bytes of text (with a
	// space, so the colon is needed) make 512.
	fits := "a " + strings.Repeat("x", 512-14-2)
	tagged := ircmsg.MakeMessage(map[string]string{"+draft/reply": strings.Repeat("i", 300)}, "", "PRIVMSG", "#c", fits)
	tests := []struct {
		name   string
		msg    ircmsg.Message
		want   error
		expect string
	}{
		{"exactly 512", ircmsg.MakeMessage(nil, "", "PRIVMSG", "#c", fits), nil, fits},
		{"512 plus tags", tagged, nil, fits},
		{"513", ircmsg.MakeMessage(nil, "", "PRIVMSG", "#c", fits+"y"), ErrLineTooLong, ""},
		{"CR", ircmsg.MakeMessage(nil, "", "PRIVMSG", "#c", "a\rb"), ErrInvalidLine, ""},
		{"LF injection", ircmsg.MakeMessage(nil, "", "PRIVMSG", "#c", "hi\nQUIT :pwned"), ErrInvalidLine, ""},
		{"NUL", ircmsg.MakeMessage(nil, "", "PRIVMSG", "#c", "a\x00b"), ErrInvalidLine, ""},
		{"CRLF in target", ircmsg.MakeMessage(nil, "", "PRIVMSG", "#c\r\n", "x"), ErrInvalidLine, ""},
		{"space in middle param", ircmsg.MakeMessage(nil, "", "PRIVMSG", "#c d", "x"), ErrInvalidLine, ""},
		{"empty command", ircmsg.MakeMessage(nil, "", "", "x"), ErrInvalidLine, ""},
		{"command with space", ircmsg.MakeMessage(nil, "", "PRIVMSG #c", "x"), ErrInvalidLine, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.SendMsg(ctx, tt.msg)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got := p.expect("PRIVMSG"); lastParam(&got) != tt.expect {
					t.Fatalf("server got %q", lastParam(&got))
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("SendMsg: %v, want %v", err, tt.want)
			}
		})
	}
	// nothing rejected reached the server
	if err := c.Send(ctx, "PING", "marker"); err != nil {
		t.Fatal(err)
	}
	p.expect("PING", "marker")
}

func TestBadInputDoesNotBreakConnection(t *testing.T) {
	srv := newTestServer(t)
	c, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice"}, nil)
	p := srv.accept()
	p.handshake("alice")
	ev.waitFor(t, Connected)
	bad := []string{
		"",
		"   ",
		":onlysource",
		"@tags-without-anything",
		"@a=b :src",
		":src \xff\xfe",          // non-ASCII command
		"@bad=\\ :src PRIVMSG x", // valid
		":srv 999 alice weird :unknown numeric",
		":bob!b@h PRIVMSG alice :\xff\xfe invalid utf-8 \xc3",
		":bob!b@h PRIVMSG",
		"PRIVMSG",
		":srv 001",
		":srv 005",
		":srv 005 alice",
		":srv CAP",
		":srv CAP alice ACK",
		"ERROR", // no params: a plain close is not fatal; sent last below
	}
	bad = bad[:len(bad)-1]
	p.send(bad...)
	p.send(strings.Repeat("a", 20000)) // overlong: skipped
	p.send("@" + strings.Repeat("t", 9000) + " :srv NOTICE alice :tags too long")
	p.send(":bob!b@h PRIVMSG alice :still here", "PING :alive")
	p.expect("PONG", "alive")
	var cmds []string
	for {
		m := ev.waitFor(t, Message)
		cmds = append(cmds, m.Msg.Command)
		if m.Msg.Command == "999" {
			if len(m.Msg.Params) != 3 {
				t.Errorf("999 params %q", m.Msg.Params)
			}
		}
		if m.Msg.Command == "PRIVMSG" && len(m.Msg.Params) == 2 && strings.HasPrefix(m.Msg.Params[1], "\xff\xfe") {
			if m.Msg.Params[1] != "\xff\xfe invalid utf-8 \xc3" {
				t.Errorf("invalid UTF-8 not kept: %q", m.Msg.Params[1])
			}
		}
		if m.Msg.Command == "PRIVMSG" && lastParam(&m.Msg) == "still here" {
			break
		}
	}
	if !slices.Contains(cmds, "999") || !c.Connected() {
		t.Fatalf("messages %q, connected %v", cmds, c.Connected())
	}
	if c.Nick() != "alice" {
		t.Fatalf("nick changed to %q by bad input", c.Nick())
	}
}

func TestClassifyError(t *testing.T) {
	tests := []struct {
		text string
		want error
	}{
		{"Closing Link: x (K-Lined)", ErrBanned},
		{"Closing Link: x (Z-Lined: bye)", ErrBanned},
		{"You are banned from this server", ErrBanned},
		{"Closing Link: x (Throttled: Reconnecting too fast) -Email admin@x for more information.", ErrThrottled},
		{"Trying to reconnect too fast.", ErrThrottled},
		{"Too many connections from your IP", ErrThrottled},
		{"Closing Link: x (Ping timeout: 120 seconds)", ErrClosedByServer},
		{"", ErrClosedByServer},
	}
	for _, tt := range tests {
		if err := classifyError(tt.text); !errors.Is(err, tt.want) {
			t.Errorf("classifyError(%q) = %v, want %v", tt.text, err, tt.want)
		}
	}
	if !isFatal(classifyError("K-Lined")) || isFatal(classifyError("Throttled")) {
		t.Error("isFatal wrong")
	}
}

func TestCasefold(t *testing.T) {
	tests := []struct {
		mapping, in, want string
		wantErr           bool
	}{
		{"", "Nick[A]\\^", "nick{a}|~", false},
		{"rfc1459", "FOO[]\\~^", "foo{}|~~", false},
		{"rfc1459-strict", "FOO[]\\^", "foo{}|^", false},
		{"ascii", "FOO[]\\^", "foo[]\\^", false},
		{"ascii", "Ünïcode\xff", "Ünïcode\xff", false},
		{"rfc7613", "Ünïcode", "ünïcode", false},
		{"rfc7613", "a b", "", true},
		{"unknown-mapping", "x", "", true},
	}
	for _, tt := range tests {
		got, err := casefold(tt.mapping, tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("casefold(%q, %q) = %q, %v; want %q, err %v", tt.mapping, tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestStopBeforeStart(t *testing.T) {
	c := New(Config{Addr: "127.0.0.1:1", Nick: "n"}, nil)
	c.Stop("never started")
	c.Start(context.Background()) // no-op after Stop
	<-c.Done()
	c.Stop("again")
}

func TestBackoffBounds(t *testing.T) {
	c := New(Config{Addr: "x:1", Nick: "n", MinBackoff: time.Second, MaxBackoff: 10 * time.Second}, nil)
	for attempt := range 40 {
		ceil := min(time.Second<<min(attempt+1, 20), 10*time.Second)
		for range 20 {
			if d := c.backoff(attempt); d < time.Second || d > ceil {
				t.Fatalf("backoff(%d) = %s, want in [1s, %s]", attempt, d, ceil)
			}
		}
	}
}

func TestConnectLimiterShared(t *testing.T) {
	// a limiter with no tokens left blocks the connect until ctx is done
	clk := newFakeClock()
	lim := newLimiterClock(1, 1, clk)
	lim.reserve()
	srv := newTestServer(t)
	c, _ := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice", ConnectLimiter: lim}, nil)
	<-clk.added // waiting on the connect limiter
	select {
	case <-srv.conns:
		t.Fatal("connected without a connect token")
	default:
	}
	clk.Advance(time.Second)
	p := srv.accept()
	p.handshake("alice")
	_ = c
}

func TestNgircd(t *testing.T) {
	addr := startNgircd(t)
	alice, aev := newTestConn(t, Config{Addr: addr, Nick: "alice", MessagesPerSecond: -1}, nil)
	bob, bev := newTestConn(t, Config{Addr: addr, Nick: "bob", MessagesPerSecond: -1}, nil)
	aev.waitFor(t, Connected)
	bev.waitFor(t, Connected)
	if !alice.HasCap("multi-prefix") {
		t.Error("ngircd offers multi-prefix but it is not enabled")
	}
	if v, ok := alice.ISupport("CHANTYPES"); !ok || v == "" {
		t.Errorf("CHANTYPES not parsed from ngircd's 005: %q", v)
	}
	ctx := context.Background()
	if err := alice.Send(ctx, "JOIN", "#test"); err != nil {
		t.Fatal(err)
	}
	waitJoin := func(ev events, c *Conn) {
		for {
			m := ev.nextMessage(t, "JOIN")
			if c.IsMe(m.Nick()) {
				return
			}
		}
	}
	waitJoin(aev, alice)
	if err := bob.Send(ctx, "JOIN", "#test"); err != nil {
		t.Fatal(err)
	}
	waitJoin(bev, bob)
	if err := alice.Send(ctx, "PRIVMSG", "#test", "hello bob, ça va ?"); err != nil {
		t.Fatal(err)
	}
	m := bev.nextMessage(t, "PRIVMSG")
	if m.Nick() != "alice" || m.Params[0] != "#test" || m.Params[1] != "hello bob, ça va ?" {
		t.Fatalf("bob got %q from %q", m.Params, m.Source)
	}
	if err := bob.Send(ctx, "PRIVMSG", "alice", "hi alice"); err != nil {
		t.Fatal(err)
	}
	m = aev.nextMessage(t, "PRIVMSG")
	if m.Nick() != "bob" || lastParam(&m) != "hi alice" {
		t.Fatalf("alice got %q from %q", m.Params, m.Source)
	}
}

// TestFloodBackpressure: while the handler is stuck, a flood of lines stops being read
// once MaxQueued wait (the server's writes block: TCP backpressure) instead of piling
// up in memory; once the handler moves again, every line arrives, in order.
func TestFloodBackpressure(t *testing.T) {
	srv := newTestServer(t)
	release := make(chan struct{})
	blocked := make(chan struct{})
	got := make(chan string, 16)
	const maxQueued = 100
	cfg := Config{Addr: srv.addr(), Nick: "alice", MaxQueued: maxQueued, Log: zerolog.Nop()}
	c := New(cfg, func(ctx context.Context, ev Event) {
		if ev.Kind != Message || ev.Msg.Command != "PRIVMSG" {
			return
		}
		text := lastParam(&ev.Msg)
		if text == "block" {
			close(blocked)
			<-release
			return
		}
		got <- text
	})
	c.Start(context.Background())
	t.Cleanup(func() { c.Stop("bye") })
	p := srv.accept()
	p.handshake("alice")
	p.send(":bob!b@h PRIVMSG #flood :block")
	<-blocked
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// 100,000 lines of 400 bytes: 40 MB, far more than the sockets' buffers hold.
	const n = 100_000
	pad := strings.Repeat("x", 380)
	written := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(p.conn, 64<<10)
		for i := range n {
			if _, err := fmt.Fprintf(w, ":bob!b@h PRIVMSG #flood :%d %s\r\n", i, pad); err != nil {
				written <- err
				return
			}
		}
		written <- w.Flush()
	}()
	deadline := time.Now().Add(watchdog)
	for c.queued() < maxQueued {
		if time.Now().After(deadline) {
			t.Fatalf("watchdog: the queue holds %d, never reached %d", c.queued(), maxQueued)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-written:
		t.Fatalf("the server wrote all %d lines (%v) while the handler was stuck: nothing pushed back", n, err)
	default:
	}
	if q := c.queued(); q > maxQueued {
		t.Fatalf("%d lines queued, cap %d", q, maxQueued)
	}
	var during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&during)
	if grown := int64(during.HeapInuse) - int64(before.HeapInuse); grown > 8<<20 {
		t.Errorf("heap grew by %d MiB while the flood waited", grown>>20)
	}
	close(release)
	for i := range n {
		select {
		case text := <-got:
			if want := fmt.Sprintf("%d %s", i, pad); text != want {
				t.Fatalf("line %d: got %.20q…, want %.20q… (lost or reordered)", i, text, want)
			}
		case <-time.After(watchdog):
			t.Fatalf("watchdog: line %d never arrived", i)
		}
	}
	if err := <-written; err != nil {
		t.Fatalf("server write: %v", err)
	}
}
