package irc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ergochat/irc-go/ircmsg"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc/ircconn"
)

// This file is what a puppet's connection hears. Channel traffic is the bot's (see
// botlines.go): a puppet follows its own joins and parts, the answers to the commands
// it sent, the echoes of its lines, and bridges its private messages.

// handle processes the puppet connection's events.
func (p *puppet) handle(ctx context.Context, ev ircconn.Event) {
	conn := p.currentConn()
	switch ev.Kind {
	case ircconn.Connected, ircconn.NickChanged:
		p.onNickSet(ctx, conn, ev.Kind == ircconn.Connected)
	case ircconn.Disconnected:
		p.markDisconnected()
		if errors.Is(ev.Err, ircconn.ErrStopped) {
			return // we closed it (shutdown, idle, logout): nothing to report
		}
		p.n.c.host.ReportState(ctx, p.login.ID, bridge.StateTransientError, fmt.Sprintf("reconnecting in %s", ev.RetryIn.Round(time.Second)))
	case ircconn.Fatal:
		p.markDisconnected()
		p.n.c.host.ReportState(ctx, p.login.ID, bridge.StateBadCredentials, ev.Err.Error())
	case ircconn.Message:
		p.handleLine(ctx, conn, ev.Msg)
	}
}

// onNickSet follows the nick the server gave the puppet, on connecting or when it
// changed, and tells the user when it is not the one they asked for.
func (p *puppet) onNickSet(ctx context.Context, conn *ircconn.Conn, connected bool) {
	nick := conn.Nick()
	oldNick, rejoin := p.adoptNick(nick, connected)
	if connected {
		p.onConnected(ctx, conn, rejoin)
	}
	if nick != p.meta.Nick && nick != oldNick {
		p.n.c.host.Notify(ctx, p.login.UserMXID, fmt.Sprintf("Your nick on %s is %s (%s was taken).", p.n.cfg.Name, nick, p.meta.Nick))
	}
}

// adoptNick records the puppet's current nick (the bot then knows the nick as ours)
// and returns the previous one. On connecting it also wakes the senders waiting for
// the connection and returns the channels to rejoin, each with a JOIN wait set up.
func (p *puppet) adoptNick(nick string, connected bool) (oldNick string, rejoin []string) {
	p.n.mu.Lock()
	if p.nick != "" && p.n.byNick[p.n.fold(p.nick)] == p {
		delete(p.n.byNick, p.n.fold(p.nick))
	}
	p.n.byNick[p.n.fold(nick)] = p
	p.n.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	oldNick = p.nick
	p.nick = nick
	if !connected {
		return oldNick, nil
	}
	select {
	case <-p.connected:
	default:
		close(p.connected)
	}
	for folded, name := range p.channels {
		rejoin = append(rejoin, name)
		if _, pending := p.joinWaits[folded]; !pending {
			p.joinWaits[folded] = make(chan struct{})
		}
	}
	return oldNick, rejoin
}

// onConnected identifies the puppet where SASL could not, reports the login connected
// and rejoins its channels.
func (p *puppet) onConnected(ctx context.Context, conn *ircconn.Conn, rejoin []string) {
	if p.meta.SASLPassword != "" && !conn.HasCap("sasl") {
		// No SASL on this server: identify to NickServ instead.
		if err := conn.Send(ctx, "PRIVMSG", "NickServ", "IDENTIFY "+p.meta.SASLUser+" "+p.meta.SASLPassword); err != nil {
			p.n.log.Debug().Err(err).Msg("Identifying to NickServ failed")
		}
	}
	p.n.c.host.ReportState(ctx, p.login.ID, bridge.StateConnected, "")
	for _, ch := range rejoin {
		if err := conn.Send(ctx, "JOIN", ch); err != nil {
			p.n.log.Debug().Err(err).Str("channel", ch).Msg("Puppet rejoin failed")
		}
	}
}

// handleLine hands a line the puppet received to its command's handler, once labeled
// responses have settled the commands they answer.
func (p *puppet) handleLine(ctx context.Context, conn *ircconn.Conn, msg ircmsg.Message) {
	if conn == nil {
		return
	}
	if p.labeledOutcome(msg) {
		p.saveChannels(ctx) // a refused JOIN
		return
	}
	switch msg.Command {
	case "JOIN":
		p.onJoin(ctx, conn, msg)
	case "TOPIC", "KICK":
		p.onChannelCommand(conn, msg)
	case "482": // ERR_CHANOPRIVSNEEDED: a TOPIC or KICK we sent was refused
		p.onOpRefused(msg)
	case "471", "473", "474", "475", "477", "403", "405", "489":
		// ERR_CHANNELISFULL, INVITEONLYCHAN, BANNEDFROMCHAN, BADCHANNELKEY, NEEDREGGEDNICK,
		// NOSUCHCHANNEL, TOOMANYCHANNELS, SECUREONLYCHAN: a JOIN was refused.
		p.onJoinRefused(ctx, msg)
	case "PART":
		p.onPart(ctx, conn, msg)
	case "PRIVMSG", "NOTICE":
		p.onText(ctx, conn, msg)
	}
}

// onJoin: the server confirmed one of the puppet's JOINs; its waiter goes on and the
// channel is remembered for restarts.
func (p *puppet) onJoin(ctx context.Context, conn *ircconn.Conn, msg ircmsg.Message) {
	if len(msg.Params) == 0 || !conn.IsMe(msg.Nick()) {
		return
	}
	folded := p.n.fold(msg.Params[0])
	p.mu.Lock()
	p.channels[folded] = msg.Params[0]
	if w, ok := p.joinWaits[folded]; ok {
		close(w)
		delete(p.joinWaits, folded)
	}
	p.mu.Unlock()
	p.saveChannels(ctx)
}

// onChannelCommand: the echo of a TOPIC or KICK the puppet sent means it succeeded.
func (p *puppet) onChannelCommand(conn *ircconn.Conn, msg ircmsg.Message) {
	if conn.IsMe(msg.Nick()) && len(msg.Params) > 0 {
		p.settleReply(msg.Command, msg.Params[0], "")
	}
}

// onOpRefused: the puppet is not a channel operator, so whichever TOPIC or KICK it
// sent there failed with the server's reason.
func (p *puppet) onOpRefused(msg ircmsg.Message) {
	if len(msg.Params) >= 2 {
		p.settleReply("TOPIC", msg.Params[1], msgParam(msg, 2))
		p.settleReply("KICK", msg.Params[1], msgParam(msg, 2))
	}
}

// onJoinRefused: the server refused a JOIN; its waiter learns why.
func (p *puppet) onJoinRefused(ctx context.Context, msg ircmsg.Message) {
	if len(msg.Params) >= 2 {
		p.joinRefused(msg.Params[1], msgParam(msg, 2))
		p.saveChannels(ctx)
	}
}

// onPart: the puppet left a channel; it is no longer rejoined after a restart.
func (p *puppet) onPart(ctx context.Context, conn *ircconn.Conn, msg ircmsg.Message) {
	if len(msg.Params) > 0 && conn.IsMe(msg.Nick()) {
		p.mu.Lock()
		delete(p.channels, p.n.fold(msg.Params[0]))
		p.mu.Unlock()
		p.saveChannels(ctx)
	}
}

// onText handles a PRIVMSG or NOTICE: an echo of the puppet's own line confirms it,
// a channel line is the bot's to bridge, a private message is bridged here.
func (p *puppet) onText(ctx context.Context, conn *ircconn.Conn, msg ircmsg.Message) {
	nick := msg.Nick()
	if conn.IsMe(nick) {
		p.gotEcho(msg)
		return
	}
	if len(msg.Params) >= 2 && isChannel(msg.Params[0]) {
		if !p.skipsChannelText([]byte(msg.Params[0])) {
			p.n.bridgeChannelLine(ctx, msg)
		}
		return
	}
	p.bridgePrivateLine(ctx, conn, msg)
}

// skipsChannelText says whether others' text to a channel is none of this puppet's
// business: channel traffic is the bot's, and only while the bot is not there to bridge
// it (disconnected, or not yet back in that channel) does one puppet stand in. The
// puppet's connection asks it before parsing each such line
// (ircconn.Config.SkipChannelText), so with hundreds of puppets in a channel a line
// costs each of them next to nothing.
func (p *puppet) skipsChannelText(channel []byte) bool {
	if p.n.botBridges(channel) {
		return true
	}
	return p.n.standInOwner(string(channel)) != p
}

// bridgePrivateLine bridges a private message from a remote user into the DM portal
// between them and this puppet's user.
func (p *puppet) bridgePrivateLine(ctx context.Context, conn *ircconn.Conn, msg ircmsg.Message) {
	nick := msg.Nick()
	if len(msg.Params) < 2 || !conn.IsMe(msg.Params[0]) || conn.IsMe(nick) || nick == "" || !strings.Contains(msg.Source, "!") {
		return // echoes and server notices are not bridged
	}
	if p.n.isOurs(nick) || !p.n.cfg.dmsAllowed() {
		return
	}
	content := lineContent(msg.Command, msg.Params[1])
	if content == nil {
		return
	}
	msgID, when := lineIdentity(msg, p.n.cfg.Name, string(p.login.ID))
	key := bridge.PortalKey{Connector: connectorName, ChatID: p.n.pmChatID(nick), Receiver: p.login.ID}
	other := p.n.userID(nick)
	p.n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteMessage, Chat: key,
		ID:     bridge.RemoteMessageID(msgID),
		Sender: bridge.Sender{RemoteID: other, Name: nick, Login: p.login.ID}, Timestamp: when, Content: content,
		CreatePortal: true, ChatInfo: &bridge.ChatInfo{Key: key, Name: nick, IsDM: true, OtherUser: other}})
}

// kicked tells the user their puppet was kicked from a channel.
func (p *puppet) kicked(ctx context.Context, channel, by, reason string) {
	p.mu.Lock()
	delete(p.channels, p.n.fold(channel))
	p.mu.Unlock()
	p.saveChannels(ctx)
	text := fmt.Sprintf("You were kicked from %s on %s by %s", channel, p.n.cfg.Name, by)
	if reason != "" {
		text += ": " + reason
	}
	p.n.c.host.Notify(ctx, p.login.UserMXID, text)
}
