package irc

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc/ircconn"
)

// scriptedServer accepts one client, offers caps, welcomes it and records its lines.
func scriptedServer(t *testing.T, caps string) (addr string, lines <-chan string) {
	return scriptedServerWith(t, caps, nil)
}

// scriptedServerWith is scriptedServer with a hook that may answer a line itself
// (returning the raw reply, "" to fall through to the default script).
func scriptedServerWith(t *testing.T, caps string, answer func(line, nick string) string) (addr string, lines <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan string, 100)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		nick := "passbot"
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			out <- line
			if answer != nil {
				if reply := answer(line, nick); reply != "" {
					c.Write([]byte(reply + "\r\n"))
					continue
				}
			}
			switch {
			case strings.HasPrefix(line, "CAP LS"):
				c.Write([]byte(":srv CAP * LS :" + caps + "\r\n"))
			case strings.HasPrefix(line, "CAP REQ"):
				c.Write([]byte(":srv CAP * ACK :" + strings.TrimPrefix(strings.TrimPrefix(line, "CAP REQ "), ":") + "\r\n"))
			case strings.HasPrefix(line, "NICK "):
				nick = strings.TrimPrefix(line, "NICK ")
			case strings.HasPrefix(line, "CAP END"):
				c.Write([]byte(":srv 001 " + nick + " :welcome\r\n:srv 005 " + nick + " CASEMAPPING=rfc1459 :supported\r\n:srv 376 " + nick + " :end\r\n"))
			case strings.HasPrefix(line, "JOIN "):
				ch := strings.TrimPrefix(line, "JOIN ")
				c.Write([]byte(":" + nick + "!b@h JOIN " + ch + "\r\n:srv 366 " + nick + " " + ch + " :End\r\n"))
			}
		}
	}()
	return ln.Addr().String(), out
}

// relayCases: a relayed message goes out with draft/relaymsg as written where the
// server offers it, and with the relay format's name prefix otherwise.
func relayCases() []struct{ name, caps, want string } {
	return []struct{ name, caps, want string }{
		{"relaymsg offered", "draft/relaymsg=/ message-tags", "RELAYMSG #c Rita/m :hello \x02there\x02"},
		{"plain server", "message-tags", "PRIVMSG #c :Rita: hello there"},
	}
}

// relayedMessage is Rita's formatted "hello there", relayed into a channel, as the core
// hands it to sess: the session is asked whether it names the sender itself; if not,
// the relay format's rendering (here "Rita: hello there") is the content.
func relayedMessage(chat bridge.PortalKey, sess bridge.Session) *bridge.MatrixMessage {
	msg := &bridge.MatrixMessage{Chat: chat, TxnID: "t1", Relayed: true,
		Sender:  bridge.MatrixSender{MXID: "@rita:example.org", DisplayName: "Rita"},
		Content: bridge.MessageContent{MsgType: "m.text", Body: "hello there", FormattedBody: "hello <b>there</b>"}}
	if ns, ok := sess.(bridge.NativeRelaySession); ok && ns.RelaysNatively(msg) {
		msg.RelayNative = true
	} else {
		msg.Content = bridge.MessageContent{MsgType: "m.text", Body: "Rita: hello there"}
	}
	return msg
}

// firstRelayed is the first PRIVMSG or RELAYMSG the scripted server received.
func firstRelayed(ctx context.Context, t *testing.T, lines <-chan string) string {
	t.Helper()
	for {
		select {
		case l := <-lines:
			if strings.HasPrefix(l, "RELAYMSG") || strings.HasPrefix(l, "PRIVMSG") {
				return l
			}
		case <-ctx.Done():
			t.Fatal("nothing relayed")
			return ""
		}
	}
}

// TestRelayMsg: with draft/relaymsg the bot relays as "Name/m" without the name prefix;
// without it, the relay-formatted text goes out as the bot's own PRIVMSG.
func TestRelayMsg(t *testing.T) {
	for _, c := range relayCases() {
		t.Run(c.name, func(t *testing.T) {
			addr, lines := scriptedServer(t, c.caps)
			n, _ := testNetwork(t, time.Minute)
			connected := make(chan struct{})
			n.bot = ircconn.New(ircconn.Config{Addr: addr, Nick: "passbot", MinBackoff: 10 * time.Millisecond},
				func(ctx context.Context, ev ircconn.Event) {
					if ev.Kind == ircconn.Connected {
						close(connected)
					}
					n.handleBot(ctx, ev)
				})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n.bot.Start(ctx)
			defer n.bot.Stop("done")
			select {
			case <-connected:
			case <-ctx.Done():
				t.Fatal("bot never connected")
			}
			n.wantChannelName("#c")
			sess := n.c.RelaySession(ctx, n.channelKey("#c"))
			msg := relayedMessage(n.channelKey("#c"), sess)
			if _, err := sess.SendMessage(ctx, msg); err != nil {
				t.Fatal(err)
			}
			if l := firstRelayed(ctx, t, lines); l != c.want {
				t.Fatalf("sent %q, want %q", l, c.want)
			}
		})
	}
}

// TestStandIn: while the bot is disconnected, the connected puppet with the smallest
// login ID in a channel bridges its lines (and only that one).
func TestStandIn(t *testing.T) {
	n, host := testNetwork(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.c.runCtx = ctx
	n.cfg.Address = "unused:1"
	mk := func(loginID string) *puppet {
		addr, _ := scriptedServer(t, "message-tags")
		p := connectedPuppet(t, ctx, n, loginID, addr)
		putInChannel(p, "#c")
		return p
	}
	first, second := mk("net/@a"), mk("net/@b")
	if n.bot.Connected() {
		t.Fatal("the test bot must be disconnected")
	}
	msg := line(t, ":carol!c@h PRIVMSG #c :while the bot is away")
	second.handleLine(ctx, second.conn, msg) // not the owner: ignored
	first.handleLine(ctx, first.conn, msg)   // the owner: bridged
	evs := host.snapshot()
	if len(evs) != 1 || evs[0].Type != bridge.RemoteMessage || evs[0].Content.Body != "while the bot is away" {
		t.Fatalf("want exactly one bridged line, got %+v", evs)
	}
}

// TestLabeledJoinRefusal: with labeled-response, a refusal is matched to the JOIN by
// its label even when the numeric does not name the channel.
func TestLabeledJoinRefusal(t *testing.T) {
	n, _ := testNetwork(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.c.runCtx = ctx
	addr, lines := scriptedServerWith(t, "labeled-response batch message-tags", func(line, nick string) string {
		if strings.HasPrefix(line, "@label=") && strings.Contains(line, " JOIN ") {
			label := strings.TrimPrefix(strings.SplitN(line, " ", 2)[0], "@label=")
			return "@label=" + label + " :srv 474 " + nick + " :Cannot join: you are banned"
		}
		return ""
	})
	p := connectedPuppet(t, ctx, n, "net/@u", addr)
	err := p.ensureJoined(ctx, p.conn, "#banned")
	if err == nil || !strings.Contains(err.Error(), "you are banned") {
		t.Fatalf("ensureJoined = %v, want the server's reason", err)
	}
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, "JOIN #banned") {
				if !strings.HasPrefix(l, "@label=") {
					t.Fatalf("JOIN sent without a label: %q", l)
				}
				return
			}
		default:
			t.Fatal("no JOIN was sent")
		}
	}
}

// TestTopicRefused: a TOPIC the server refuses (482, not a channel operator) comes back
// to the Matrix user as an error with the server's reason.
func TestTopicRefused(t *testing.T) {
	n, _ := testNetwork(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.c.runCtx = ctx
	addr, _ := scriptedServerWith(t, "message-tags", func(line, nick string) string {
		if strings.HasPrefix(line, "TOPIC ") {
			return ":srv 482 " + nick + " #c :You're not a channel operator"
		}
		return ""
	})
	p := connectedPuppet(t, ctx, n, "net/@u", addr)
	topic := "new topic"
	err := p.SendRoomMeta(ctx, n.channelKey("#c"), nil, &topic)
	if err == nil || !strings.Contains(err.Error(), "not a channel operator") {
		t.Fatalf("SendRoomMeta = %v, want the server's refusal", err)
	}
}

// connectedPuppet loads a puppet whose connection goes to addr (a scripted server) with
// the real handler, and waits until it is connected.
func connectedPuppet(t *testing.T, ctx context.Context, n *network, loginID, addr string) *puppet {
	t.Helper()
	p, err := n.loadPuppet(&bridge.Login{Connector: "irc", ID: bridge.LoginID(loginID), UserMXID: "@u:example.org"})
	if err != nil {
		t.Fatal(err)
	}
	p.meta.Nick = "u" + loginID[len(loginID)-1:]
	p.conn = ircconn.New(ircconn.Config{Addr: addr, Nick: p.meta.Nick, MinBackoff: 10 * time.Millisecond}, p.handle)
	p.conn.Start(ctx)
	t.Cleanup(func() { p.conn.Stop("done") })
	select {
	case <-p.connected:
	case <-ctx.Done():
		t.Fatal("puppet never connected")
	}
	return p
}

// TestPuppetRelayMsg: a relay account's puppet speaking for a team member in a channel
// uses draft/relaymsg where offered, and the relay format otherwise.
func TestPuppetRelayMsg(t *testing.T) {
	for _, c := range relayCases() {
		t.Run(c.name, func(t *testing.T) {
			n, _ := testNetwork(t, time.Minute)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n.c.runCtx = ctx
			addr, lines := scriptedServer(t, c.caps)
			p := connectedPuppet(t, ctx, n, "net/@s", addr)
			putInChannel(p, "#c")
			msg := relayedMessage(n.channelKey("#c"), p)
			if _, err := p.SendMessage(ctx, msg); err != nil {
				t.Fatal(err)
			}
			if l := firstRelayed(ctx, t, lines); l != c.want {
				t.Fatalf("sent %q, want %q", l, c.want)
			}
		})
	}
}

// putInChannel records a puppet as in a channel, under its lock: its connection's
// goroutine reads the channels on connecting.
func putInChannel(p *puppet, channel string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.channels[p.n.fold(channel)] = channel
}
