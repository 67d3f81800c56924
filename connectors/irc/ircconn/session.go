package ircconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"github.com/ergochat/irc-go/ircreader"
	"github.com/ergochat/irc-go/ircutils"
)

const (
	readerInitial = 512
	// readerMax is ircreader's default: 8 KiB of tags plus the 512-byte line,
	// with slack.
	readerMax       = 8192 + 1024
	keepaliveToken  = "passerelle-keepalive"
	capReqMaxLength = 400 // bytes of capability names per CAP REQ line
)

// session is one TCP (or TLS) connection. Fields below "read goroutine" are
// only touched by the network goroutine.
type session struct {
	c       *Conn
	conn    net.Conn
	ctx     context.Context // cancelled when the connection ends
	cancel  context.CancelCauseFunc
	writeMu sync.Mutex
	done    chan struct{} // closed after the read loop has ended

	// read goroutine
	registered   bool
	announced    bool // Connected emitted
	offered      map[string]string
	lsDone       bool
	pendingReq   int
	capEnded     bool
	saslStarted  bool
	nickAttempt  int
	pingSent     bool
	lastRead     time.Time
	registerBy   time.Time
	skippingLong bool
	// chantypes are the server's channel prefixes (ISUPPORT CHANTYPES).
	chantypes string
}

func newSession(parent context.Context, c *Conn, nc net.Conn) *session {
	ctx, cancel := context.WithCancelCause(parent)
	s := &session{c: c, conn: nc, ctx: ctx, cancel: cancel, done: make(chan struct{}), offered: map[string]string{},
		chantypes: defaultChanTypes}
	context.AfterFunc(ctx, func() { nc.Close() })
	return s
}

// fail ends the session with cause (the first cause wins).
func (s *session) fail(cause error) {
	s.cancel(cause)
}

// write serialises and writes an internal line, bypassing flood control.
func (s *session) write(msg *ircmsg.Message) error {
	line, err := msg.LineBytesStrict(true, 0)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidLine, msg.Command, err)
	}
	return s.writeLine(msg.Command, line)
}

func (s *session) send(command string, params ...string) error {
	msg := ircmsg.MakeMessage(nil, "", command, params...)
	return s.write(&msg)
}

// writeLine writes one serialised line; a write error ends the session.
func (s *session) writeLine(command string, line []byte) error {
	if s.ctx.Err() != nil {
		return ErrNotConnected
	}
	if e := s.c.log.Trace(); e.Enabled() {
		e.Str("line", redact(command, line)).Msg("IRC >>")
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.c.cfg.PingTimeout))
	if _, err := s.conn.Write(line); err != nil {
		err = fmt.Errorf("ircconn: write: %w", err)
		s.fail(err)
		return err
	}
	return nil
}

// redact hides secrets in a raw line for logging.
func redact(command string, line []byte) string {
	switch strings.ToUpper(command) {
	case "PASS", "OPER", "AUTHENTICATE":
		if command == "AUTHENTICATE" && strings.HasSuffix(strings.TrimRight(string(line), "\r\n"), " PLAIN") {
			break
		}
		return command + " <redacted>"
	}
	return strings.TrimRight(string(line), "\r\n")
}

// readLoop registers and reads lines until the connection ends.
func (s *session) readLoop() error {
	cfg := &s.c.cfg
	now := time.Now()
	s.lastRead = now
	s.registerBy = now.Add(cfg.PingTimeout)
	if cfg.ServerPassword != "" {
		if err := s.send("PASS", cfg.ServerPassword); err != nil {
			return s.cause(err)
		}
	}
	if err := s.send("CAP", "LS", "302"); err != nil {
		return s.cause(err)
	}
	if err := s.send("NICK", cfg.Nick); err != nil {
		return s.cause(err)
	}
	if err := s.send("USER", cfg.User, "0", "*", cfg.RealName); err != nil {
		return s.cause(err)
	}

	var r ircreader.Reader
	r.Initialize(s.conn, readerInitial, readerMax)
	for {
		deadline := s.lastRead.Add(cfg.PingInterval)
		if s.pingSent {
			deadline = s.lastRead.Add(cfg.PingTimeout)
		}
		if !s.registered && s.registerBy.Before(deadline) {
			deadline = s.registerBy
		}
		_ = s.conn.SetReadDeadline(deadline)
		raw, err := r.ReadLine()
		if err != nil {
			switch {
			case errors.Is(err, ircreader.ErrReadQ):
				s.c.log.Debug().Int("max", readerMax).Msg("skipping overlong IRC line")
				r.Initialize(s.conn, readerInitial, readerMax)
				s.skippingLong = true
				continue
			case errors.Is(err, os.ErrDeadlineExceeded) && s.ctx.Err() == nil:
				now := time.Now()
				if !s.registered && !now.Before(s.registerBy) {
					return ErrRegistration
				}
				if s.pingSent {
					return fmt.Errorf("%w: nothing received for %s", ErrPingTimeout, now.Sub(s.lastRead).Round(time.Second))
				}
				s.pingSent = true
				if err := s.send("PING", keepaliveToken); err != nil {
					return s.cause(err)
				}
				continue
			}
			return s.cause(fmt.Errorf("ircconn: read: %w", err))
		}
		s.lastRead = time.Now()
		s.pingSent = false
		if s.skippingLong {
			// the tail of a line that overflowed the reader
			s.skippingLong = false
			continue
		}
		if len(raw) == 0 {
			continue
		}
		if s.skipLine(raw) {
			continue
		}
		line := string(raw)
		msg, err := ircmsg.ParseLine(line)
		if err != nil {
			s.c.log.Debug().Err(err).Int("length", len(line)).Msg("ignoring malformed IRC line")
			continue
		}
		if e := s.c.log.Trace(); e.Enabled() {
			e.Str("line", redact(msg.Command, raw)).Msg("IRC <<")
		}
		if err := s.handle(msg); err != nil {
			return err
		}
	}
}

// cause returns the recorded reason the session ended, or err.
func (s *session) cause(err error) error {
	if c := context.Cause(s.ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

func lastParam(msg *ircmsg.Message) string {
	if len(msg.Params) == 0 {
		return ""
	}
	return msg.Params[len(msg.Params)-1]
}

// handle processes one parsed line on the network goroutine. A non-nil
// error ends the connection.
func (s *session) handle(msg ircmsg.Message) error {
	c := s.c
	switch msg.Command {
	case "PING":
		return s.cause(s.send("PONG", msg.Params...))
	case "PONG":
		if lastParam(&msg) == keepaliveToken {
			return nil
		}
	case "AUTHENTICATE":
		return s.handleAuthenticate(&msg)
	case "CAP":
		if err := s.handleCap(&msg); err != nil {
			return err
		}
	case "001":
		s.registered = true
		if len(msg.Params) > 0 && msg.Params[0] != "" {
			s.setNick(msg.Params[0], ircmsg.Message{})
		}
		c.log.Debug().Str("nick", c.Nick()).Msg("registered with IRC server")
	case "005":
		s.handleISupport(&msg)
	case "376", "422":
		if s.registered && !s.announced {
			c.emit(Event{Kind: Message, Msg: msg})
			s.announce()
			return nil
		}
	case "432", "433", "436", "437":
		if !s.registered {
			return s.nextNick(&msg)
		}
	case "464":
		return fmt.Errorf("%w: %s", ErrBadPassword, lastParam(&msg))
	case "465":
		return fmt.Errorf("%w: %s", ErrBanned, lastParam(&msg))
	case "902", "904", "905", "906", "908":
		if s.saslStarted {
			return fmt.Errorf("%w: %s %s", ErrSASLFailed, msg.Command, lastParam(&msg))
		}
	case "903", "907":
		if s.saslStarted && !s.capEnded {
			c.log.Debug().Msg("SASL authentication succeeded")
			if err := s.capEnd(); err != nil {
				return err
			}
		}
	case "ERROR":
		return classifyError(lastParam(&msg))
	case "NICK":
		if s.registered && c.IsMe(msg.Nick()) && len(msg.Params) > 0 {
			s.setNick(msg.Params[0], msg)
			return nil
		}
	}
	if s.registered && !s.announced && fallbackAnnounce(msg.Command) {
		s.announce()
	}
	if c.emitLine(s.ctx, Event{Kind: Message, Msg: msg}) {
		// The wait was ours, not the server's silence: the keepalive clock restarts.
		s.lastRead = time.Now()
	}
	return nil
}

// fallbackAnnounce reports whether command, received after 001 without an
// end of MOTD, shows that registration is over.
func fallbackAnnounce(command string) bool {
	if len(command) == 3 && command[0] >= '0' && command[0] <= '9' {
		return false
	}
	switch command {
	case "PING", "PONG", "NOTICE", "CAP", "AUTHENTICATE", "NICK", "ERROR":
		return false
	}
	return true
}

func (s *session) announce() {
	s.announced = true
	c := s.c
	c.mu.Lock()
	c.connected = true
	c.mu.Unlock()
	c.log.Debug().Msg("IRC connection ready")
	c.emit(Event{Kind: Connected})
}

// setNick records our new nick and emits NickChanged if it differs.
func (s *session) setNick(nick string, msg ircmsg.Message) {
	c := s.c
	c.mu.Lock()
	old := c.nick
	c.nick = nick
	c.mu.Unlock()
	if old != nick {
		c.emit(Event{Kind: NickChanged, Msg: msg, Nick: nick})
	}
}

// nickCandidate returns the nick to try on attempt n (0 is the configured nick).
func nickCandidate(nick string, n int) string {
	switch n {
	case 0:
		return nick
	case 1:
		return nick + "_"
	case 2:
		return nick + "__"
	}
	return nick + strconv.Itoa(n-2)
}

func (s *session) nextNick(msg *ircmsg.Message) error {
	if msg.Command == "432" {
		return fmt.Errorf("%w: %s: %s", ErrNickUnavailable, nickCandidate(s.c.cfg.Nick, s.nickAttempt), lastParam(msg))
	}
	s.nickAttempt++
	if s.nickAttempt >= maxNickAttempts {
		return fmt.Errorf("%w: tried %d nicks, last: %s", ErrNickUnavailable, s.nickAttempt, lastParam(msg))
	}
	next := nickCandidate(s.c.cfg.Nick, s.nickAttempt)
	s.c.log.Debug().Str("nick", next).Str("numeric", msg.Command).Msg("nick unavailable, trying another")
	return s.cause(s.send("NICK", next))
}

func (s *session) handleISupport(msg *ircmsg.Message) {
	if len(msg.Params) < 3 {
		return
	}
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tok := range msg.Params[1 : len(msg.Params)-1] {
		if strings.HasPrefix(tok, "-") {
			delete(c.isupport, strings.ToUpper(tok[1:]))
			continue
		}
		k, v, _ := strings.Cut(tok, "=")
		if k != "" {
			c.isupport[strings.ToUpper(k)] = unescapeISupport(v)
		}
	}
	s.chantypes = defaultChanTypes
	if v, ok := c.isupport["CHANTYPES"]; ok {
		s.chantypes = v
	}
}

// defaultChanTypes are the channel prefixes of a server that does not say (RFC 2812).
const defaultChanTypes = "#&"

// unescapeISupport decodes \xHH escapes in an ISUPPORT value.
func unescapeISupport(v string) string {
	if !strings.Contains(v, `\x`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+4 <= len(v) && v[i+1] == 'x' {
			if n, err := strconv.ParseUint(v[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

func (s *session) saslWanted() bool {
	return s.c.cfg.SASLUser != "" && s.c.cfg.SASLPassword != ""
}

func (s *session) handleCap(msg *ircmsg.Message) error {
	if len(msg.Params) < 2 {
		return nil
	}
	sub := strings.ToUpper(msg.Params[1])
	list := lastParam(msg)
	more := len(msg.Params) >= 4 && msg.Params[2] == "*"
	c := s.c
	switch sub {
	case "LS":
		if s.lsDone {
			return nil
		}
		for _, tok := range strings.Fields(list) {
			k, v, _ := strings.Cut(tok, "=")
			s.offered[k] = v
		}
		if more {
			return nil
		}
		s.lsDone = true
		var want []string
		for _, name := range c.cfg.Caps {
			v, ok := s.offered[name]
			if !ok {
				continue
			}
			if name == "sasl" {
				if !s.saslWanted() {
					continue
				}
				if v != "" && !strings.Contains(","+strings.ToUpper(v)+",", ",PLAIN,") {
					c.log.Debug().Str("mechanisms", v).Msg("server does not offer SASL PLAIN; continuing without SASL")
					continue
				}
			}
			want = append(want, name)
		}
		if s.saslWanted() && !slices.Contains(want, "sasl") {
			c.log.Debug().Msg("SASL configured but not available; continuing without SASL")
		}
		if len(want) == 0 {
			return s.capEnd()
		}
		return s.capReq(want, true)
	case "ACK", "NAK":
		if sub == "ACK" {
			c.mu.Lock()
			for _, name := range strings.Fields(list) {
				if strings.HasPrefix(name, "-") {
					delete(c.caps, name[1:])
				} else {
					c.caps[name] = true
				}
			}
			c.mu.Unlock()
		}
		if s.capEnded || s.pendingReq == 0 {
			return nil
		}
		s.pendingReq--
		if s.pendingReq > 0 {
			return nil
		}
		if s.saslWanted() && c.HasCap("sasl") {
			s.saslStarted = true
			return s.cause(s.send("AUTHENTICATE", "PLAIN"))
		}
		return s.capEnd()
	case "NEW":
		var want []string
		for _, tok := range strings.Fields(list) {
			name, v, _ := strings.Cut(tok, "=")
			s.offered[name] = v
			if name != "sasl" && slices.Contains(c.cfg.Caps, name) && !c.HasCap(name) {
				want = append(want, name)
			}
		}
		if len(want) > 0 {
			return s.capReq(want, false)
		}
	case "DEL":
		c.mu.Lock()
		for _, name := range strings.Fields(list) {
			delete(c.caps, name)
			delete(s.offered, name)
		}
		c.mu.Unlock()
	}
	return nil
}

// capReq sends CAP REQ lines for names, split to stay well under 512 bytes.
func (s *session) capReq(names []string, counted bool) error {
	var lines []string
	cur := ""
	for _, n := range names {
		if cur != "" && len(cur)+1+len(n) > capReqMaxLength {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += n
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	if counted {
		s.pendingReq = len(lines)
	}
	for _, l := range lines {
		msg := ircmsg.MakeMessage(nil, "", "CAP", "REQ", l)
		msg.ForceTrailing()
		if err := s.write(&msg); err != nil {
			return s.cause(err)
		}
	}
	return nil
}

func (s *session) capEnd() error {
	s.capEnded = true
	return s.cause(s.send("CAP", "END"))
}

func (s *session) handleAuthenticate(msg *ircmsg.Message) error {
	if !s.saslStarted || lastParam(msg) != "+" {
		return nil
	}
	cfg := &s.c.cfg
	payload := []byte(cfg.SASLUser + "\x00" + cfg.SASLUser + "\x00" + cfg.SASLPassword)
	for _, chunk := range ircutils.EncodeSASLResponse(payload) {
		if err := s.send("AUTHENTICATE", chunk); err != nil {
			return s.cause(err)
		}
	}
	return nil
}

// classifyError maps the text of an ERROR line to an error.
func classifyError(text string) error {
	l := strings.ToLower(text)
	for _, w := range []string{"k-lined", "g-lined", "z-lined", "d-lined", "k-line", "g-line", "z-line", "d-line", "klined", "glined", "zlined", "banned"} {
		if strings.Contains(l, w) {
			return fmt.Errorf("%w: %s", ErrBanned, text)
		}
	}
	for _, w := range []string{"throttl", "too many connections", "reconnecting too fast", "too fast", "too many host connections", "too many user connections"} {
		if strings.Contains(l, w) {
			return fmt.Errorf("%w: %s", ErrThrottled, text)
		}
	}
	return fmt.Errorf("%w: %s", ErrClosedByServer, text)
}
