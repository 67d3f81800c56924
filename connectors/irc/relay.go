package irc

import (
	"context"
	"fmt"
	"time"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc/ircformat"
)

// RelaySession implements bridge.RelayingNetwork: in channels, Matrix users without a
// puppet of their own (a network in relay mode, or users only allowed to relay) speak
// through the network's bot, with the core's relay format naming them.
func (c *Connector) RelaySession(ctx context.Context, chat bridge.PortalKey) bridge.Session {
	pc, err := parseChatID(chat.ChatID)
	if err != nil || pc.channel == "" || chat.Receiver != "" {
		return nil
	}
	n := c.networks[pc.network]
	if n == nil || n.bot == nil {
		return nil
	}
	return &botSession{n: n}
}

// botSession sends through the bot connection. It is never stored as a login.
type botSession struct{ n *network }

func (b *botSession) Connect(ctx context.Context)      {}
func (b *botSession) Disconnect()                      {}
func (b *botSession) Logout(ctx context.Context) error { return nil }

func (b *botSession) SendMessage(ctx context.Context, msg *bridge.MatrixMessage) (*bridge.SendResult, error) {
	if !b.n.bot.Connected() {
		return nil, fmt.Errorf("%w: bot on %s", errNotConnected, b.n.cfg.Name)
	}
	pc, err := parseChatID(msg.Chat.ChatID)
	if err != nil {
		return nil, err
	}
	target := b.n.wantChannelName(pc.channel)
	text := msg.Content.Body
	// With draft/relaymsg the server shows each message as coming from "Name/m", so the
	// text goes as written, without the relay format's name prefix.
	command, params := "PRIVMSG", []string{target}
	if b.n.bot.HasCap("draft/relaymsg") && msg.Original != nil {
		command, params = "RELAYMSG", []string{target, relayNick(msg.Sender)}
		text = ircformat.MatrixToIRC(msg.Original.Body, msg.Original.FormattedBody)
	}
	if m := msg.Content.Media; m != nil && m.PublicURL != "" {
		text += " " + m.PublicURL
	}
	lines := ircformat.SplitLines(text, ircformat.MaxMessageBytes(0, target))
	if len(lines) > b.n.cfg.MaxLines {
		return nil, bridge.NewUserError("the message is %d IRC lines long; the limit on %s is %d", len(lines), b.n.cfg.Name, b.n.cfg.MaxLines)
	}
	res := &bridge.SendResult{Timestamp: time.Now()}
	for i, line := range lines {
		if err := b.n.bot.Send(ctx, command, append(params, line)...); err != nil {
			return res, fmt.Errorf("relaying line %d/%d: %w", i+1, len(lines), err)
		}
		res.RemoteIDs = append(res.RemoteIDs, fmt.Sprintf("relay:%s:%d", msg.TxnID, i))
	}
	return res, nil
}

// relayNick is the spoofed nick draft/relaymsg shows: the sender's name, IRC-safe, with
// the "/" the spec requires so nobody mistakes it for a real user.
func relayNick(s bridge.MatrixSender) string {
	name := s.DisplayName
	if name == "" {
		name = s.MXID.Localpart()
	}
	return sanitizeNick(name, 20) + "/m"
}
