package ircconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"github.com/rs/zerolog"
)

const (
	defaultMaxLine  = 512
	dialTimeout     = 30 * time.Second
	quitGrace       = 2 * time.Second
	stableAfter     = time.Minute
	maxNickAttempts = 10
)

// Conn is one IRC connection that reconnects until stopped. Create it with
// New, then call Start. All methods are safe for concurrent use.
type Conn struct {
	cfg     Config
	handler func(ctx context.Context, ev Event)
	log     zerolog.Logger
	flood   *Limiter
	sendSem chan struct{} // capacity 1; channel senders queue FIFO

	mu        sync.Mutex
	started   bool
	stopping  bool
	cancel    context.CancelFunc
	sess      *session // current connection, nil between attempts
	dials     int      // connection attempts so far, for server rotation
	nick      string
	connected bool
	caps      map[string]bool
	isupport  map[string]string

	qmu     sync.Mutex
	queue   []Event
	qclosed bool
	qsignal chan struct{} // capacity 1
	qspace  chan struct{} // capacity 1: the handler took an event off a full queue

	runDone     chan struct{}
	handlerDone chan struct{}
}

// New returns a Conn for cfg that reports to handler. Defaults are filled in
// for zero fields; nothing happens until Start.
func New(cfg Config, handler func(ctx context.Context, ev Event)) *Conn {
	if cfg.User == "" {
		cfg.User = cfg.Nick
	}
	if cfg.RealName == "" {
		cfg.RealName = cfg.Nick
	}
	if cfg.Caps == nil {
		cfg.Caps = DefaultCaps()
	}
	if cfg.MessagesPerSecond == 0 {
		cfg.MessagesPerSecond = 2
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 5
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 2 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 60 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 2 * cfg.PingInterval
	}
	if cfg.PingTimeout <= cfg.PingInterval {
		cfg.PingTimeout = cfg.PingInterval + cfg.PingInterval/2
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 1000
	}
	if handler == nil {
		handler = func(context.Context, Event) {}
	}
	return &Conn{
		cfg:         cfg,
		handler:     handler,
		log:         cfg.Log.With().Str("component", "ircconn").Str("addr", cfg.Addr).Str("config_nick", cfg.Nick).Logger(),
		flood:       NewLimiter(cfg.MessagesPerSecond, cfg.Burst),
		sendSem:     make(chan struct{}, 1),
		nick:        cfg.Nick,
		qsignal:     make(chan struct{}, 1),
		qspace:      make(chan struct{}, 1),
		runDone:     make(chan struct{}),
		handlerDone: make(chan struct{}),
	}
}

// Start connects in the background and keeps reconnecting until Stop, ctx
// is cancelled, or a Fatal event. ctx is also passed to the handler. Calling
// Start more than once, or after Stop, does nothing.
func (c *Conn) Start(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.stopping {
		return
	}
	c.started = true
	runCtx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	go c.dispatch(ctx)
	go c.run(runCtx)
}

// Stop sends QUIT with reason (if connected), waits briefly for the server
// to close the connection, stops reconnecting and waits until both the
// network and handler goroutines have exited (queued events are still
// delivered). It must not be called from the handler; use go c.Stop(...)
// there. Stop is idempotent.
func (c *Conn) Stop(reason string) {
	c.mu.Lock()
	if c.stopping {
		started := c.started
		c.mu.Unlock()
		if started {
			<-c.runDone
			<-c.handlerDone
		}
		return
	}
	c.stopping = true
	started, s, cancel := c.started, c.sess, c.cancel
	c.mu.Unlock()
	if !started {
		// Start will now do nothing; let Done report completion.
		close(c.runDone)
		close(c.handlerDone)
		return
	}
	if s != nil {
		quit := ircmsg.MakeMessage(nil, "", "QUIT", ircmsg.TruncateUTF8Safe(sanitize(reason), 400))
		if err := s.write(&quit); err == nil {
			t := time.NewTimer(quitGrace)
			select {
			case <-s.done:
			case <-t.C:
			}
			t.Stop()
		}
	}
	cancel()
	<-c.runDone
	<-c.handlerDone
}

// Done is closed when the Conn's goroutines have all exited: after Stop, or
// after a Fatal event has been handled (call Stop anyway; it is cheap then).
func (c *Conn) Done() <-chan struct{} { return c.handlerDone }

// Send sends one line (command and params) through flood control, after
// any earlier Send. It blocks until the line is written, ctx is done, or
// the connection is lost. It fails with ErrNotConnected before Connected,
// ErrInvalidLine for CR, LF or NUL or malformed params, and ErrLineTooLong
// for lines over 512 bytes (or the server's LINELEN) without tags.
func (c *Conn) Send(ctx context.Context, command string, params ...string) error {
	return c.SendMsg(ctx, ircmsg.MakeMessage(nil, "", command, params...))
}

// SendMsg is Send for a full message, with tags. The Source is ignored.
// Tags are sent as given; only use them when the matching caps are enabled.
func (c *Conn) SendMsg(ctx context.Context, msg ircmsg.Message) error {
	msg.Source = ""
	line, err := c.encode(&msg)
	if err != nil {
		return err
	}
	select {
	case c.sendSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("ircconn: send %s: %w", msg.Command, ctx.Err())
	}
	defer func() { <-c.sendSem }()

	c.mu.Lock()
	s, ok := c.sess, c.connected
	c.mu.Unlock()
	if s == nil || !ok {
		return fmt.Errorf("ircconn: send %s: %w", msg.Command, ErrNotConnected)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	if err := c.flood.Wait(wctx); err != nil {
		if s.ctx.Err() != nil {
			return fmt.Errorf("ircconn: send %s: %w", msg.Command, ErrNotConnected)
		}
		return fmt.Errorf("ircconn: send %s: %w", msg.Command, err)
	}
	if err := s.writeLine(msg.Command, line); err != nil {
		return fmt.Errorf("ircconn: send %s: %w", msg.Command, err)
	}
	return nil
}

// encode validates and serialises an outgoing message.
func (c *Conn) encode(msg *ircmsg.Message) ([]byte, error) {
	if msg.Command == "" || strings.ContainsAny(msg.Command, " \r\n\x00:") {
		return nil, fmt.Errorf("%w: bad command %q", ErrInvalidLine, msg.Command)
	}
	for i, p := range msg.Params {
		if strings.ContainsAny(p, "\r\n\x00") {
			return nil, fmt.Errorf("%w: param %d contains CR, LF or NUL", ErrInvalidLine, i)
		}
	}
	line, err := msg.LineBytesStrict(true, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidLine, msg.Command, err)
	}
	body := line
	if len(body) > 0 && body[0] == '@' {
		if i := strings.IndexByte(string(body), ' '); i >= 0 {
			body = body[i+1:]
		}
	}
	if limit := c.lineLimit(); len(body) > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrLineTooLong, msg.Command, len(body), limit)
	}
	return line, nil
}

// lineLimit is the maximum length of a line without tags, including CRLF.
func (c *Conn) lineLimit() int {
	if v, ok := c.ISupport("LINELEN"); ok {
		if n, err := strconv.Atoi(v); err == nil && n > defaultMaxLine {
			return n
		}
	}
	return defaultMaxLine
}

// Nick returns our current nick (the configured nick before registration).
func (c *Conn) Nick() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nick
}

// Connected reports whether the connection is registered and usable.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// HasCap reports whether the server acknowledged capability name on the
// current (or, while disconnected, the last) connection.
func (c *Conn) HasCap(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.caps[name]
}

// ISupport returns the value of the 005 ISUPPORT token key (case
// insensitive) on the current (or last) connection; ok is false if it was
// not sent.
func (c *Conn) ISupport(key string) (value string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	value, ok = c.isupport[strings.ToUpper(key)]
	return value, ok
}

// Casefold folds s per the server's CASEMAPPING (rfc1459 when not
// advertised; also ascii, rfc1459-strict and rfc7613). It fails for an
// unknown mapping or a string the PRECIS profile rejects.
func (c *Conn) Casefold(s string) (string, error) {
	mapping, _ := c.ISupport("CASEMAPPING")
	return casefold(mapping, s)
}

// IsMe reports whether nick is our current nick under the server's
// casemapping.
func (c *Conn) IsMe(nick string) bool {
	me := c.Nick()
	a, err1 := c.Casefold(nick)
	b, err2 := c.Casefold(me)
	if err1 != nil || err2 != nil {
		return nick == me
	}
	return a == b
}

// emit queues ev for the handler goroutine. It never blocks.
func (c *Conn) emit(ev Event) {
	if ev.Nick == "" {
		ev.Nick = c.Nick()
	}
	c.qmu.Lock()
	if c.qclosed {
		c.qmu.Unlock()
		return
	}
	c.queue = append(c.queue, ev)
	c.qmu.Unlock()
	select {
	case c.qsignal <- struct{}{}:
	default:
	}
}

// emitLine queues a received line for the handler, waiting while MaxQueued lines wait
// already (the reading goroutine then reads nothing more: backpressure). It reports
// whether it waited; the wait ends early, dropping the line, when ctx ends (the
// connection is going away).
func (c *Conn) emitLine(ctx context.Context, ev Event) (waited bool) {
	for {
		c.qmu.Lock()
		if c.qclosed || len(c.queue) < c.cfg.MaxQueued {
			c.qmu.Unlock()
			c.emit(ev)
			return waited
		}
		c.qmu.Unlock()
		waited = true
		select {
		case <-c.qspace:
		case <-ctx.Done():
			return waited
		}
	}
}

// queued is how many events wait for the handler.
func (c *Conn) queued() int {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return len(c.queue)
}

func (c *Conn) closeQueue() {
	c.qmu.Lock()
	c.qclosed = true
	c.qmu.Unlock()
	select {
	case c.qsignal <- struct{}{}:
	default:
	}
}

// dispatch is the handler goroutine.
func (c *Conn) dispatch(ctx context.Context) {
	defer close(c.handlerDone)
	for {
		c.qmu.Lock()
		for len(c.queue) == 0 {
			if c.qclosed {
				c.qmu.Unlock()
				return
			}
			c.qmu.Unlock()
			<-c.qsignal
			c.qmu.Lock()
		}
		ev := c.queue[0]
		c.queue[0] = Event{}
		c.queue = c.queue[1:]
		if len(c.queue) == 0 {
			c.queue = nil
		}
		c.qmu.Unlock()
		select {
		case c.qspace <- struct{}{}:
		default:
		}
		c.callHandler(ctx, ev)
	}
}

func (c *Conn) callHandler(ctx context.Context, ev Event) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error().Interface("panic", r).Stringer("kind", ev.Kind).Msg("IRC event handler panicked")
		}
	}()
	c.handler(ctx, ev)
}

// run is the network goroutine: connect, read, back off, repeat.
func (c *Conn) run(ctx context.Context) {
	defer close(c.runDone)
	defer c.closeQueue()
	if c.cfg.Addr == "" || c.cfg.Nick == "" {
		c.emit(Event{Kind: Fatal, Err: fmt.Errorf("%w: Addr and Nick are required", ErrInvalidConfig)})
		return
	}
	attempt := 0
	for {
		if err := c.cfg.ConnectLimiter.Wait(ctx); err != nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		began := time.Now()
		err := c.connectOnce(ctx)
		if ctx.Err() != nil || c.isStopping() {
			c.log.Debug().Err(err).Msg("IRC connection stopped")
			c.emit(Event{Kind: Disconnected, Err: fmt.Errorf("%w: %w", ErrStopped, err)})
			return
		}
		if isFatal(err) {
			c.log.Debug().Err(err).Msg("IRC connection failed fatally")
			c.emit(Event{Kind: Fatal, Err: err})
			return
		}
		if time.Since(began) > stableAfter {
			attempt = 0
		}
		var delay time.Duration
		if errors.Is(err, ErrThrottled) {
			delay = c.cfg.MaxBackoff/2 + rand.N(c.cfg.MaxBackoff/2+1)
		} else {
			delay = c.backoff(attempt)
			attempt++
		}
		c.log.Debug().Err(err).Dur("retry_in", delay).Msg("IRC connection lost")
		c.emit(Event{Kind: Disconnected, Err: err, RetryIn: delay})
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// backoff returns a delay in [MinBackoff, min(MaxBackoff, MinBackoff*2^(attempt+1))]:
// even the first retry is jittered, so connections dropped together (a server restart)
// do not all come back at the same instant.
func (c *Conn) backoff(attempt int) time.Duration {
	lo, hi := c.cfg.MinBackoff, c.cfg.MaxBackoff
	ceil := hi
	if attempt < 30 {
		if v := lo << (attempt + 1); v > 0 && v < hi {
			ceil = v
		}
	}
	return lo + rand.N(ceil-lo+1)
}

func (c *Conn) isStopping() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopping
}

// nextAddr returns the server to dial: the first one, then the fallbacks in turn, one
// step further after every attempt.
func (c *Conn) nextAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	all := append([]string{c.cfg.Addr}, c.cfg.Fallbacks...)
	addr := all[c.dials%len(all)]
	c.dials++
	return addr
}

// connectOnce dials, registers and reads until the connection ends. It
// always returns a non-nil error saying why.
func (c *Conn) connectOnce(ctx context.Context) error {
	addr := c.nextAddr()
	c.log.Debug().Str("server", addr).Msg("connecting to IRC server")
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("ircconn: dial %s: %w", addr, err)
	}
	if c.cfg.TLS {
		tc := c.cfg.TLSConfig.Clone()
		if tc == nil {
			tc = &tls.Config{}
		}
		if tc.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			tc.ServerName = host
		}
		tconn := tls.Client(nc, tc)
		hctx, cancel := context.WithTimeout(ctx, dialTimeout)
		err := tconn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return fmt.Errorf("ircconn: TLS handshake with %s: %w", addr, err)
		}
		nc = tconn
	}
	s := newSession(ctx, c, nc)
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		s.fail(ErrStopped)
		close(s.done)
		return ErrStopped
	}
	c.sess = s
	c.connected = false
	c.caps = map[string]bool{}
	c.isupport = map[string]string{}
	c.mu.Unlock()

	err = s.readLoop()

	c.mu.Lock()
	c.sess = nil
	c.connected = false
	c.mu.Unlock()
	s.fail(err)
	close(s.done)
	return err
}

// sanitize replaces CR, LF and NUL with spaces.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
}
