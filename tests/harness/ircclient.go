package harness

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
)

// IRCClient is a plain IRC user for tests: it registers, answers PING, records every
// line it receives and can wait for one.
type IRCClient struct {
	Nick    string
	conn    net.Conn
	mu      sync.Mutex
	lines   []ircmsg.Message
	changed chan struct{}
	closed  bool
}

// DialIRC connects and registers nick, returning once the server welcomed it.
func DialIRC(ctx context.Context, addr, nick string) (*IRCClient, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dialling IRC server: %w", err)
	}
	c := &IRCClient{Nick: nick, conn: conn, changed: make(chan struct{})}
	go c.read()
	if err = c.Raw("NICK %s", nick); err == nil {
		err = c.Raw("USER %s 0 * :%s test user", userPart(nick), nick)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	if _, err = c.Wait(ctx, func(m ircmsg.Message) bool { return m.Command == "001" }); err != nil {
		conn.Close()
		return nil, fmt.Errorf("registering %s: %w", nick, err)
	}
	return c, nil
}

func (c *IRCClient) read() {
	r := bufio.NewReaderSize(c.conn, 16384)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			c.mu.Lock()
			c.closed = true
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
			return
		}
		msg, err := ircmsg.ParseLine(strings.TrimRight(line, "\r\n"))
		if err != nil {
			continue
		}
		if msg.Command == "PING" {
			_ = c.Raw("PONG :%s", strings.Join(msg.Params, " "))
			continue
		}
		c.mu.Lock()
		c.lines = append(c.lines, msg)
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

// Raw sends one line.
func (c *IRCClient) Raw(format string, args ...any) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := fmt.Fprintf(c.conn, format+"\r\n", args...)
	return err
}

// Join joins a channel and waits for the server's confirmation.
func (c *IRCClient) Join(ctx context.Context, channel string) error {
	if err := c.Raw("JOIN %s", channel); err != nil {
		return err
	}
	_, err := c.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "366" && len(m.Params) > 1 && strings.EqualFold(m.Params[1], channel)
	})
	return err
}

// Privmsg says text to target.
func (c *IRCClient) Privmsg(target, text string) error { return c.Raw("PRIVMSG %s :%s", target, text) }

// Wait returns the first recorded line (including earlier ones) that matches.
func (c *IRCClient) Wait(ctx context.Context, match func(ircmsg.Message) bool) (ircmsg.Message, error) {
	for {
		c.mu.Lock()
		for _, m := range c.lines {
			if match(m) {
				c.mu.Unlock()
				return m, nil
			}
		}
		changed, closed := c.changed, c.closed
		c.mu.Unlock()
		if closed {
			return ircmsg.Message{}, fmt.Errorf("%s: connection closed; got: %s", c.Nick, c.summary())
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ircmsg.Message{}, fmt.Errorf("%s waiting for a line: %w; got: %s", c.Nick, ctx.Err(), c.summary())
		}
	}
}

// Forget drops what was received so far, so the next Wait only sees new lines.
func (c *IRCClient) Forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = nil
}

// Lines returns a copy of what was received.
func (c *IRCClient) Lines() []ircmsg.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ircmsg.Message(nil), c.lines...)
}

func (c *IRCClient) summary() string {
	lines := c.Lines()
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	var parts []string
	for _, m := range lines {
		l, _ := m.Line()
		parts = append(parts, truncate(strings.TrimSpace(l), 120))
	}
	return strings.Join(parts, " | ")
}

// Close quits.
func (c *IRCClient) Close() {
	_ = c.Raw("QUIT :bye")
	c.conn.Close()
}

// PrivmsgFrom matches a PRIVMSG from nick to target with exactly text.
func PrivmsgFrom(nick, target, text string) func(ircmsg.Message) bool {
	return func(m ircmsg.Message) bool {
		return m.Command == "PRIVMSG" && strings.EqualFold(m.Nick(), nick) && len(m.Params) == 2 &&
			strings.EqualFold(m.Params[0], target) && m.Params[1] == text
	}
}

// userPart is a USER name servers accept: the nick's letters and digits.
func userPart(nick string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(nick) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "test"
	}
	return b.String()
}
