package irc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc/ircconn"
)

// capConn is a connection to a scripted server offering caps, connected.
func capConn(t *testing.T, ctx context.Context, caps string) (*ircconn.Conn, <-chan string) {
	t.Helper()
	addr, lines := scriptedServer(t, caps)
	connected := make(chan struct{})
	conn := ircconn.New(ircconn.Config{Addr: addr, Nick: "passbot", MinBackoff: 10 * time.Millisecond},
		func(ctx context.Context, ev ircconn.Event) {
			if ev.Kind == ircconn.Connected {
				close(connected)
			}
		})
	conn.Start(ctx)
	t.Cleanup(func() { conn.Stop("done") })
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatal("never connected")
	}
	return conn, lines
}

// TestRenderOutbound: what each kind of Matrix message becomes on IRC.
func TestRenderOutbound(t *testing.T) {
	text := func(body, html string) bridge.MessageContent {
		return bridge.MessageContent{MsgType: "m.text", Body: body, FormattedBody: html}
	}
	long := strings.Repeat("many words in a long paragraph ", 300)
	rita := bridge.MatrixSender{MXID: "@rita:example.org", DisplayName: "Rita"}
	cases := []struct {
		name, caps string
		link       string // the bridge's public text link ("" for none)
		msg        bridge.MatrixMessage
		command    string
		params     string
		lines      []string
		echoed     bool
		err        string
	}{
		{name: "formatting and pills", msg: bridge.MatrixMessage{Content: text("hi Mia, bold",
			`hi <a href="https://matrix.to/#/@mia:example.org">Mia</a>, <b>bold</b>`)},
			command: "PRIVMSG", params: "#c", lines: []string{"hi mia[m], \x02bold\x02"}},
		{name: "notice", msg: bridge.MatrixMessage{Content: bridge.MessageContent{MsgType: "m.notice", Body: "note"}},
			command: "NOTICE", params: "#c", lines: []string{"note"}},
		{name: "emote", msg: bridge.MatrixMessage{Content: bridge.MessageContent{MsgType: "m.emote", Body: "waves"}},
			command: "PRIVMSG", params: "#c", lines: []string{"\x01ACTION waves\x01"}},
		{name: "reply", msg: bridge.MatrixMessage{Content: text("sure", ""), ReplyToSender: "@mia:example.org"},
			command: "PRIVMSG", params: "#c", lines: []string{"mia[m]: sure"}},
		{name: "file with a public link", msg: bridge.MatrixMessage{Content: bridge.MessageContent{MsgType: "m.image",
			Body: "look", Media: &bridge.Media{FileName: "photo.jpg", PublicURL: "https://media.example.org/p"}}},
			command: "PRIVMSG", params: "#c", lines: []string{"look https://media.example.org/p"}},
		{name: "file without a public link", msg: bridge.MatrixMessage{Content: bridge.MessageContent{MsgType: "m.image",
			Body: "photo.jpg", Media: &bridge.Media{FileName: "photo.jpg", MimeType: "image/jpeg", Size: 12}}},
			command: "PRIVMSG", params: "#c", lines: []string{"sent photo.jpg (image/jpeg, 12 bytes; no public link is configured)"}},
		{name: "echo-message confirms", caps: "echo-message", msg: bridge.MatrixMessage{Content: text("hi", "")},
			command: "PRIVMSG", params: "#c", lines: []string{"hi"}, echoed: true},
		{name: "relayed with draft/relaymsg", caps: "draft/relaymsg=/ echo-message",
			msg: bridge.MatrixMessage{Relayed: true, RelayNative: true, Sender: rita,
				Content: bridge.MessageContent{MsgType: "m.text", Body: "hello there", FormattedBody: "hello <b>there</b>"}},
			command: "RELAYMSG", params: "#c Rita/m", lines: []string{"hello \x02there\x02"}},
		{name: "relayed natively, but the server lost draft/relaymsg", caps: "echo-message",
			msg: bridge.MatrixMessage{Relayed: true, RelayNative: true, Sender: rita, Content: text("hello there", "")},
			err: "can no longer show who"},
		{name: "relayed file with draft/relaymsg", caps: "draft/relaymsg=/",
			msg: bridge.MatrixMessage{Relayed: true, Sender: rita, Content: bridge.MessageContent{MsgType: "m.image",
				Body: "Rita sent photo.jpg", Media: &bridge.Media{FileName: "photo.jpg", PublicURL: "https://media.example.org/p"}}},
			command: "PRIVMSG", params: "#c", lines: []string{"Rita sent photo.jpg https://media.example.org/p"}},
		{name: "too long, no public links", msg: bridge.MatrixMessage{Content: text(long, "")},
			err: "the limit on net is 10"},
		{name: "too long, as a link", link: "https://bridge.example.org/t/1", msg: bridge.MatrixMessage{Content: text(long, "")},
			command: "PRIVMSG", params: "#c"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, host := testNetwork(t, time.Minute)
			host.textLink = c.link
			n.puppets[string(puppetLoginID("net", "@mia:example.org"))] = &puppet{nick: "mia[m]"}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, _ := capConn(t, ctx, c.caps)
			out, err := n.renderOutbound(ctx, conn, "#c", &c.msg)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.command != c.command || strings.Join(out.params, " ") != c.params || out.echoed != c.echoed {
				t.Fatalf("got %s %v (echoed %v), want %s %s (echoed %v)", out.command, out.params, out.echoed, c.command, c.params, c.echoed)
			}
			if c.link != "" {
				if len(out.lines) != 1 || !strings.HasSuffix(out.lines[0], " … (full message: "+c.link+")") {
					t.Fatalf("lines = %q, want the first line and the link", out.lines)
				}
				return
			}
			if strings.Join(out.lines, "\n") != strings.Join(c.lines, "\n") {
				t.Fatalf("lines = %q, want %q", out.lines, c.lines)
			}
		})
	}
}

// TestBotAndPuppetSendAlike: the bot's relay and a puppet put the same message on the
// wire the same way, whichever connection carries it.
func TestBotAndPuppetSendAlike(t *testing.T) {
	msgs := []*bridge.MatrixMessage{
		{TxnID: "t1", Content: bridge.MessageContent{MsgType: "m.notice", Body: "Rita: hello", FormattedBody: "Rita: <i>hello</i>"}},
		{TxnID: "t2", Content: bridge.MessageContent{MsgType: "m.emote", Body: "waves"}},
	}
	for _, msg := range msgs {
		n, _ := testNetwork(t, time.Minute)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.c.runCtx = ctx
		var bot <-chan string
		n.bot, bot = capConn(t, ctx, "message-tags")
		msg.Chat = n.channelKey("#c")
		if _, err := n.c.RelaySession(ctx, msg.Chat).SendMessage(ctx, msg); err != nil {
			t.Fatal(err)
		}
		addr, viaPuppet := scriptedServer(t, "message-tags")
		p := connectedPuppet(t, ctx, n, "net/@s", addr)
		putInChannel(p, "#c")
		if _, err := p.SendMessage(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if b, p := firstText(ctx, t, bot), firstText(ctx, t, viaPuppet); b != p {
			t.Fatalf("the bot sent %q, the puppet %q", b, p)
		}
	}
}

// firstText is the first PRIVMSG or NOTICE a scripted server received.
func firstText(ctx context.Context, t *testing.T, lines <-chan string) string {
	t.Helper()
	for {
		select {
		case l := <-lines:
			if strings.HasPrefix(l, "PRIVMSG") || strings.HasPrefix(l, "NOTICE") {
				return l
			}
		case <-ctx.Done():
			t.Fatal("nothing sent")
			return ""
		}
	}
}
