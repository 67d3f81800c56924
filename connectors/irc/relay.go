package irc

import (
	"context"
	"fmt"
	"time"

	"github.com/passerelle/passerelle/bridge"
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

// Connect implements bridge.Session; the bot's connection belongs to the network,
// which keeps it up, so there is nothing to do.
func (b *botSession) Connect(ctx context.Context) {}

// Disconnect implements bridge.Session; the bot stays for the network's other channels.
func (b *botSession) Disconnect() {}

// Logout implements bridge.Session; a relay session is no login, so nothing is stored.
func (b *botSession) Logout(ctx context.Context) error { return nil }

// RelaysNatively implements bridge.NativeRelaySession: with draft/relaymsg the bot's
// lines show who wrote them.
func (b *botSession) RelaysNatively(msg *bridge.MatrixMessage) bool {
	return b.n.relaysNatively(b.n.bot, msg)
}

// SendMessage implements bridge.Session: the message is rendered by the outbound
// renderer, as a puppet's would be, and relayed on the bot's connection. The core has
// already put the sender's name into the text, unless msg.RelayNative.
func (b *botSession) SendMessage(ctx context.Context, msg *bridge.MatrixMessage) (*bridge.SendResult, error) {
	if !b.n.bot.Connected() {
		return nil, fmt.Errorf("%w: bot on %s", errNotConnected, b.n.cfg.Name)
	}
	pc, err := parseChatID(msg.Chat.ChatID)
	if err != nil {
		return nil, err
	}
	target := b.n.wantChannelName(pc.channel)
	out, err := b.n.renderOutbound(ctx, b.n.bot, target, msg)
	if err != nil {
		return nil, err
	}
	res := &bridge.SendResult{Timestamp: time.Now()}
	for i, line := range out.lines {
		if err := b.n.bot.Send(ctx, out.command, out.args(line)...); err != nil {
			return res, fmt.Errorf("relaying line %d/%d: %w", i+1, len(out.lines), err)
		}
		res.RemoteIDs = append(res.RemoteIDs, bridge.RemoteMessageID(fmt.Sprintf("relay:%s:%d", msg.TxnID, i)))
	}
	return res, nil
}
