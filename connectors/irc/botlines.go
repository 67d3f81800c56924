package irc

import (
	"context"
	"strings"
	"time"

	"github.com/ergochat/irc-go/ircmsg"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc/ircconn"
)

// This file is what the bot's connection hears: all channel traffic of bridged channels
// enters the bridge here, one short handler per IRC command.

// handleBot processes the bot connection's events.
func (n *network) handleBot(ctx context.Context, ev ircconn.Event) {
	switch ev.Kind {
	case ircconn.Connected:
		n.onBotConnected(ctx)
	case ircconn.Disconnected:
		n.botDown()
		n.log.Warn().Err(ev.Err).Dur("retry_in", ev.RetryIn).Msg("Bot disconnected")
	case ircconn.Fatal:
		n.botDown()
		n.log.Error().Err(ev.Err).Msg("Bot connection refused for good; fix the network config")
	case ircconn.Message:
		n.handleBotLine(ctx, ev.Msg)
	}
}

// onBotConnected marks the bot up and (re)joins every channel it should be in, each
// with a fresh NAMES list to come.
func (n *network) onBotConnected(ctx context.Context) {
	n.log.Info().Str("nick", n.bot.Nick()).Msg("Bot connected")
	if cm, ok := n.bot.ISupport("CASEMAPPING"); ok && cm != n.casemapping() {
		n.log.Warn().Str("server", cm).Str("configured", n.casemapping()).
			Msg("The server's CASEMAPPING differs from the network's casemapping setting; set it to match before the network is used")
	}
	n.mu.Lock()
	var names []string
	for _, st := range n.channels {
		st.joined = false
		n.noteBotPresenceLocked()
		st.namesDone = make(chan struct{})
		names = append(names, st.name)
	}
	select {
	case <-n.botUp:
	default:
		close(n.botUp)
	}
	n.mu.Unlock()
	for _, name := range names {
		if err := n.bot.Send(ctx, "JOIN", name); err != nil {
			n.log.Warn().Err(err).Str("channel", name).Msg("Rejoining channel failed")
		}
	}
}

// handleBotLine hands a line the bot received to its command's handler.
func (n *network) handleBotLine(ctx context.Context, msg ircmsg.Message) {
	if !wellFormedBotLine(msg) {
		n.log.Debug().Str("command", msg.Command).Int("params", len(msg.Params)).Msg("Dropped a malformed IRC line")
		return
	}
	switch msg.Command {
	case "JOIN":
		n.onJoin(ctx, msg)
	case "PART":
		n.onPart(ctx, msg)
	case "QUIT":
		n.onQuit(ctx, msg)
	case "NICK":
		n.onNick(ctx, msg)
	case "KICK":
		n.onKick(ctx, msg)
	case "TOPIC":
		n.onTopic(ctx, msg)
	case "332": // RPL_TOPIC on join
		n.onTopicReply(msg)
	case "353": // RPL_NAMREPLY
		n.onNamesReply(msg)
	case "366": // RPL_ENDOFNAMES
		n.onEndOfNames(ctx, msg)
	case "MODE":
		n.handleMode(ctx, msg)
	case "AWAY":
		n.onAway(ctx, msg)
	case "BATCH":
		n.onBatch(msg)
	case "PRIVMSG", "NOTICE":
		n.bridgeChannelLine(ctx, msg)
	}
}

// wellFormedBotLine says a line has what its handler reads: the parameters that name a
// channel or a user present and not empty, and a source for what users do. A broken or
// hostile server's line without them would be bridged into a chat or from a user with
// an empty name.
func wellFormedBotLine(msg ircmsg.Message) bool {
	need, named := 0, 0 // parameters needed; how many of the first must not be empty
	fromUser := true
	switch msg.Command {
	case "JOIN", "PART", "NICK", "MODE":
		need, named = 1, 1
	case "KICK":
		need, named = 2, 2
	case "TOPIC", "PRIVMSG", "NOTICE":
		need, named = 2, 1
	case "QUIT", "AWAY":
	case "BATCH":
		need, named, fromUser = 1, 1, false
	case "332", "366": // RPL_TOPIC, RPL_ENDOFNAMES: us, the channel
		need, named, fromUser = 2, 2, false
	case "353": // RPL_NAMREPLY: us, the channel's kind, the channel, the names
		need, named, fromUser = 4, 3, false
	default:
		return true
	}
	if len(msg.Params) < need {
		return false
	}
	for _, p := range msg.Params[:named] {
		if p == "" {
			return false
		}
	}
	return !fromUser || msg.Nick() != ""
}

// onJoin: the bot's own JOIN opens the channel's NAMES list; anyone else joining
// (but our puppets) becomes a Matrix join, unless they are back from a netsplit.
func (n *network) onJoin(ctx context.Context, msg ircmsg.Message) {
	nick, channel := msg.Nick(), msgParam(msg, 0)
	n.mu.Lock()
	st := n.wantChannelLocked(channel)
	if n.bot.IsMe(nick) {
		st.name, st.joined = channel, true
		n.noteBotPresenceLocked()
		st.names = map[string]member{}
		n.mu.Unlock()
		return
	}
	_, puppet := n.byNick[n.fold(nick)]
	st.members[n.fold(nick)] = member{nick: nick}
	n.mu.Unlock()
	if n.rejoinedAfterSplit(nick, channel) {
		return // back from a netsplit: their ghost never left
	}
	if puppet {
		return
	}
	// extended-join adds the account (or "*") and the real name.
	sender := bridge.Sender{RemoteID: n.userID(nick), Name: nick, RealName: msgParam(msg, 2)}
	if account := msgParam(msg, 1); account != "*" {
		sender.Account = account
	}
	n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteJoin, Chat: n.channelKey(channel),
		Sender: sender, Timestamp: msgTime(msg)})
}

// onPart: the bot leaving marks the channel unjoined; anyone else leaving (but our
// puppets) becomes a Matrix leave with their reason.
func (n *network) onPart(ctx context.Context, msg ircmsg.Message) {
	nick, channel := msg.Nick(), msgParam(msg, 0)
	n.mu.Lock()
	st := n.wantChannelLocked(channel)
	if n.bot.IsMe(nick) {
		st.joined = false
		n.noteBotPresenceLocked()
		n.mu.Unlock()
		return
	}
	delete(st.members, n.fold(nick))
	puppet := n.ownNickLocked(n.fold(nick), false)
	n.mu.Unlock()
	if !puppet {
		n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteLeave, Chat: n.channelKey(channel),
			Sender: bridge.Sender{RemoteID: n.userID(nick), Name: nick}, Reason: msgParam(msg, 1), Timestamp: msgTime(msg)})
	}
}

// onQuit: a user quitting leaves every channel they were in, after a grace when it
// looks like a netsplit (they may come back).
func (n *network) onQuit(ctx context.Context, msg ircmsg.Message) {
	nick := msg.Nick()
	folded := n.fold(nick)
	n.mu.Lock()
	// Our own puppets quitting (the bridge stopping, an idle puppet) are not
	// remote users leaving: they never become Matrix leaves.
	puppet := n.ownNickLocked(folded, true)
	var left []string
	for _, st := range n.channels {
		if _, ok := st.members[folded]; ok {
			delete(st.members, folded)
			left = append(left, st.name)
		}
	}
	n.mu.Unlock()
	if puppet {
		return
	}
	if isNetsplit(msgParam(msg, 0)) || n.inBatch(msg, "netsplit") {
		n.holdSplit(nick, left)
		return
	}
	for _, channel := range left {
		n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteLeave, Chat: n.channelKey(channel),
			Sender: bridge.Sender{RemoteID: n.userID(nick), Name: nick}, Reason: msgParam(msg, 0), Timestamp: msgTime(msg)})
	}
}

// onNick follows a nick change in the member lists. A nick is an identity on IRC: the
// old nick's ghost leaves and the new one joins, so history keeps saying who said what.
func (n *network) onNick(ctx context.Context, msg ircmsg.Message) {
	nick, newNick := msg.Nick(), msgParam(msg, 0)
	oldFolded, newFolded := n.fold(nick), n.fold(newNick)
	n.mu.Lock()
	_, puppet := n.byNick[oldFolded]
	if !puppet {
		_, puppet = n.byNick[newFolded]
	}
	var in []string
	for _, st := range n.channels {
		if m, ok := st.members[oldFolded]; ok {
			delete(st.members, oldFolded)
			m.nick = newNick
			st.members[newFolded] = m
			in = append(in, st.name)
		}
	}
	n.mu.Unlock()
	if puppet || n.bot.IsMe(newNick) {
		return
	}
	for _, channel := range in {
		key := n.channelKey(channel)
		n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteLeave, Chat: key, Reason: "Changed nick to " + newNick,
			Sender: bridge.Sender{RemoteID: n.userID(nick), Name: nick}, Timestamp: msgTime(msg)})
		n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteJoin, Chat: key,
			Sender: bridge.Sender{RemoteID: n.userID(newNick), Name: newNick}, Timestamp: msgTime(msg)})
	}
}

// onKick: a kicked bot rejoins; a kicked puppet's user is told; a kicked remote user
// becomes a Matrix kick.
func (n *network) onKick(ctx context.Context, msg ircmsg.Message) {
	nick, channel, target := msg.Nick(), msgParam(msg, 0), msgParam(msg, 1)
	n.mu.Lock()
	st := n.wantChannelLocked(channel)
	delete(st.members, n.fold(target))
	if n.bot.IsMe(target) {
		st.joined = false
		n.noteBotPresenceLocked()
	}
	n.mu.Unlock()
	if n.bot.IsMe(target) {
		n.log.Warn().Str("channel", channel).Str("by", nick).Msg("Bot was kicked, rejoining")
		_ = n.bot.Send(ctx, "JOIN", channel)
		return
	}
	if p := n.puppetByNick(target); p != nil {
		p.kicked(ctx, channel, nick, msgParam(msg, 2))
		return
	}
	n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteKick, Chat: n.channelKey(channel),
		Sender: bridge.Sender{RemoteID: n.userID(nick), Name: nick}, TargetUser: n.userID(target),
		Reason: msgParam(msg, 2), Timestamp: msgTime(msg)})
}

// onTopic records a topic change and brings it to the room.
func (n *network) onTopic(ctx context.Context, msg ircmsg.Message) {
	nick, channel, topic := msg.Nick(), msgParam(msg, 0), msgParam(msg, 1)
	n.mu.Lock()
	n.wantChannelLocked(channel).topic = topic
	name := n.wantChannelLocked(channel).name
	n.mu.Unlock()
	key := n.channelKey(channel)
	n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteChatInfo, Chat: key, Timestamp: msgTime(msg),
		Sender:   bridge.Sender{RemoteID: n.userID(nick), Name: nick},
		ChatInfo: &bridge.ChatInfo{Key: key, Name: name, Topic: topic}})
}

// onTopicReply records the topic the server sends on joining (RPL_TOPIC), for the
// room's info once the NAMES list is complete.
func (n *network) onTopicReply(msg ircmsg.Message) {
	n.mu.Lock()
	n.wantChannelLocked(msgParam(msg, 1)).topic = msgParam(msg, 2)
	n.mu.Unlock()
}

// onNamesReply collects one RPL_NAMREPLY line ("me = #chan :@op +voice nick") into the
// channel's NAMES list in progress.
func (n *network) onNamesReply(msg ircmsg.Message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.wantChannelLocked(msgParam(msg, 2))
	if st.names == nil {
		st.names = map[string]member{}
	}
	for _, entry := range strings.Fields(msgParam(msg, 3)) {
		i := strings.IndexFunc(entry, func(r rune) bool { return !strings.ContainsRune("~&@%+", r) })
		if i < 0 {
			continue
		}
		prefixes := entry[:i]
		entry = entry[i:]
		if bang := strings.IndexByte(entry, '!'); bang >= 0 { // userhost-in-names
			entry = entry[:bang]
		}
		if entry == "" {
			continue // "!user@host" alone names nobody
		}
		st.names[n.fold(entry)] = member{nick: entry, prefixes: prefixes}
	}
}

// onEndOfNames completes a channel's NAMES list (RPL_ENDOFNAMES): it becomes the
// membership, and the room is told the whole of it.
func (n *network) onEndOfNames(ctx context.Context, msg ircmsg.Message) {
	n.mu.Lock()
	st := n.wantChannelLocked(msgParam(msg, 1))
	if st.names != nil {
		st.members = st.names
		st.names = nil
	}
	select {
	case <-st.namesDone:
	default:
		close(st.namesDone)
	}
	if !st.joined {
		n.mu.Unlock()
		return // a NAMES answer for a channel the bot is not in
	}
	info := n.chatInfoLocked(st)
	n.mu.Unlock()
	// The whole membership, as the bot found it on (re)joining: rooms catch up with
	// who came and went while the bridge was away. Channels listed in the config are
	// bridged from the start: their portal exists before anyone asks for it.
	info.MembersComplete = true
	n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteChatInfo, Chat: info.Key, ChatInfo: info,
		CreatePortal: n.configured(info.Name), Timestamp: time.Now()})
}

// onAway (away-notify): a member went away (with a reason) or came back (none).
func (n *network) onAway(ctx context.Context, msg ircmsg.Message) {
	nick := msg.Nick()
	if n.isOurs(nick) || nick == "" {
		return
	}
	n.mu.Lock()
	var in string
	for _, st := range n.channels {
		if _, ok := st.members[n.fold(nick)]; ok {
			in = st.name
			break
		}
	}
	n.mu.Unlock()
	if in == "" {
		return
	}
	n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemotePresence, Chat: n.channelKey(in), Timestamp: msgTime(msg),
		Sender: bridge.Sender{RemoteID: n.userID(nick), Name: nick}, Reason: msgParam(msg, 0)})
}

// onBatch tracks open IRCv3 batches: servers wrap netsplit QUITs in a "netsplit" batch.
func (n *network) onBatch(msg ircmsg.Message) {
	ref := msgParam(msg, 0)
	n.mu.Lock()
	defer n.mu.Unlock()
	if strings.HasPrefix(ref, "+") {
		n.batches[ref[1:]] = msgParam(msg, 1)
	} else if strings.HasPrefix(ref, "-") {
		delete(n.batches, ref[1:])
	}
}

// bridgeChannelLine bridges a channel PRIVMSG/NOTICE. The bot's connection owns channel
// traffic; while it is down, one puppet in the channel stands in (failover).
func (n *network) bridgeChannelLine(ctx context.Context, msg ircmsg.Message) {
	nick := msg.Nick()
	param := func(i int) string { return msgParam(msg, i) }
	target := param(0)
	if !isChannel(target) || n.isOurs(nick) || nick == "" || strings.Contains(nick, ".") && !strings.Contains(msg.Source, "!") {
		return // DMs to the bot, our own lines, server notices
	}
	n.checkConsent(target, nick, param(1))
	content := lineContent(msg.Command, param(1))
	if content == nil {
		return
	}
	msgID, when := lineIdentity(msg, n.cfg.Name, target)
	n.addMentions(content, target)
	sender := bridge.Sender{RemoteID: n.userID(nick), Name: nick}
	if ok, account := msg.GetTag("account"); ok { // account-tag
		sender.Account = account
	}
	n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteMessage, Chat: n.channelKey(target),
		ID: bridge.RemoteMessageID(msgID), Sender: sender, Timestamp: when, Content: content})
}

// handleMode turns channel op/halfop/voice changes into power levels.
func (n *network) handleMode(ctx context.Context, msg ircmsg.Message) {
	if len(msg.Params) < 2 || !isChannel(msg.Params[0]) {
		return
	}
	channel, modes, args := msg.Params[0], msg.Params[1], msg.Params[2:]
	adding := true
	for _, r := range modes {
		switch r {
		case '+':
			adding = true
			continue
		case '-':
			adding = false
			continue
		}
		takesArg := strings.ContainsRune("ohvqaklbeI", r) && (adding || !strings.ContainsRune("l", r))
		if !takesArg || len(args) == 0 {
			continue
		}
		arg := args[0]
		args = args[1:]
		prefix := map[rune]string{'o': "@", 'h': "%", 'v': "+", 'q': "~", 'a': "&"}[r]
		if prefix == "" {
			continue
		}
		folded := n.fold(arg)
		n.mu.Lock()
		st := n.wantChannelLocked(channel)
		m := st.members[folded]
		if m.nick == "" {
			m.nick = arg
		}
		if adding && !strings.Contains(m.prefixes, prefix) {
			m.prefixes += prefix
		} else if !adding {
			m.prefixes = strings.ReplaceAll(m.prefixes, prefix, "")
		}
		st.members[folded] = m
		p := n.byNick[folded]
		n.mu.Unlock()
		if n.bot.IsMe(arg) {
			continue
		}
		level := n.powerFor(m.prefixes)
		if level == nil {
			zero := 0
			level = &zero
		}
		evt := &bridge.RemoteEvent{Type: bridge.RemotePowerLevel, Chat: n.channelKey(channel),
			Sender:     bridge.Sender{RemoteID: n.userID(msg.Nick()), Name: msg.Nick()},
			TargetUser: n.userID(arg), PowerLevel: level, Timestamp: msgTime(msg)}
		if p != nil {
			// A Matrix user's puppet got ops: the Matrix user gets the power in the portal.
			evt.TargetUser, evt.TargetMXID = "", p.login.UserMXID
		}
		n.queue(ctx, evt)
	}
}
