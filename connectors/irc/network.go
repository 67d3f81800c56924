package irc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"github.com/rs/zerolog"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc/ircconn"
	"github.com/passerelle/passerelle/connectors/irc/ircformat"
)

// network is one configured IRC network: its bot connection, the channels it bridges
// and the puppets of Matrix users on it.
type network struct {
	c   *Connector
	cfg *NetworkConfig
	log zerolog.Logger
	bot *ircconn.Conn
	// folder casefolds per the configured casemapping.
	folder func(string) string

	mu sync.Mutex
	// botUp is closed while the bot is connected (replaced when it drops), so callers
	// can wait through a reconnect instead of failing.
	botUp    chan struct{}
	splits   map[string]*splitQuit    // netsplit quits waiting out the grace, by folded nick
	consents map[string]chan bool     // plumb consent questions, by folded channel
	batches  map[string]string        // open IRCv3 batches: reference → type
	channels map[string]*channelState // by folded name
	puppets  map[string]*puppet       // by login ID
	byNick   map[string]*puppet       // by folded current nick
	// departed holds the nicks of puppets the bridge itself disconnected (shutdown,
	// idle, logout), by folded nick, until the bot sees them quit: their QUIT is ours,
	// not a remote user leaving.
	departed map[string]time.Time
}

// channelState is what the bot knows of a channel it is in (or wants to be in).
type channelState struct {
	name      string
	joined    bool
	topic     string
	members   map[string]member
	names     map[string]member
	namesDone chan struct{}
}

type member struct {
	nick     string
	prefixes string
}

func newNetwork(c *Connector, cfg *NetworkConfig) *network {
	return &network{c: c, cfg: cfg, log: c.host.Log().With().Str("irc_network", cfg.Name).Logger(),
		channels: map[string]*channelState{}, puppets: map[string]*puppet{}, byNick: map[string]*puppet{}, departed: map[string]time.Time{},
		splits: map[string]*splitQuit{}, consents: map[string]chan bool{}, botUp: make(chan struct{}), batches: map[string]string{},
		folder: foldFor(cfg.Casemapping)}
}

func (n *network) connConfig(nick, saslUser, saslPassword string) ircconn.Config {
	cfg := ircconn.Config{Addr: n.cfg.Address, Fallbacks: n.cfg.FallbackAddresses, TLS: n.cfg.TLS, ServerPassword: n.cfg.ServerPassword,
		Nick: nick, User: userName(nick), RealName: nick,
		SASLUser: saslUser, SASLPassword: saslPassword,
		MessagesPerSecond: n.cfg.MessagesPerSecond, Burst: n.cfg.Burst, ConnectLimiter: n.c.limiter,
		Log: n.log.With().Str("irc_nick", nick).Logger()}
	if n.cfg.TLS {
		// The server name is taken from whichever address is dialled.
		cfg.TLSConfig = &tls.Config{InsecureSkipVerify: n.cfg.TLSInsecure} //nolint:gosec // opt-in for test networks
	}
	return cfg
}

// start connects the bot, which joins the configured channels and the bridged ones.
func (n *network) start(ctx context.Context, bridged []string) {
	n.mu.Lock()
	for _, ch := range n.cfg.Channels {
		n.wantChannelLocked(ch)
	}
	for _, ch := range bridged {
		n.wantChannelLocked(ch)
	}
	n.mu.Unlock()
	if len(bridged) > 0 {
		n.log.Info().Int("channels", len(bridged)).Msg("Rejoining bridged channels")
	}
	n.bot = ircconn.New(n.connConfig(n.cfg.BotNick, n.cfg.BotSASLUser, n.cfg.BotSASLPassword), n.handleBot)
	n.bot.Start(ctx)
}

func (n *network) stop() {
	n.mu.Lock()
	puppets := make([]*puppet, 0, len(n.puppets))
	for _, p := range n.puppets {
		puppets = append(puppets, p)
	}
	n.mu.Unlock()
	n.flushSplits()
	for _, p := range puppets {
		p.Disconnect()
	}
	if n.bot != nil {
		n.bot.Stop("Bridge shutting down")
	}
}

// wantChannelLocked records that the bot should be in a channel.
func (n *network) wantChannelLocked(name string) *channelState {
	key := n.fold(name)
	st := n.channels[key]
	if st == nil {
		st = &channelState{name: name, members: map[string]member{}, namesDone: make(chan struct{})}
		n.channels[key] = st
	}
	return st
}

// userName derives the USER name from a nick: servers only accept plain letters and
// digits there (ngircd refuses brackets).
func userName(nick string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(nick) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
		if b.Len() == 9 {
			break
		}
	}
	if b.Len() == 0 {
		return "matrix"
	}
	return b.String()
}

// displayNick returns the nick as last seen with its case, or the folded one.
func (n *network) displayNick(folded string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, st := range n.channels {
		if m, ok := st.members[folded]; ok {
			return m.nick
		}
	}
	return folded
}

func (n *network) botDown() {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case <-n.botUp:
		n.botUp = make(chan struct{})
	default:
	}
}

// waitBot waits (bounded) for the bot connection, so a portal asked for during a
// reconnect is created once the bot is back rather than refused.
func (n *network) waitBot(ctx context.Context) error {
	n.mu.Lock()
	up := n.botUp
	n.mu.Unlock()
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case <-up:
		return nil
	case <-waitCtx.Done():
		return fmt.Errorf("the bridge is not connected to %s right now", n.cfg.Name)
	}
}

// inBatch says whether a line belongs to an open batch of the given type.
func (n *network) inBatch(msg ircmsg.Message, kind string) bool {
	ok, ref := msg.GetTag("batch")
	if !ok {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.batches[ref] == kind
}

func (n *network) casemapping() string {
	if n.cfg.Casemapping == "" {
		return "rfc1459"
	}
	return n.cfg.Casemapping
}

// configured says whether a channel is in the network's config.
func (n *network) configured(channel string) bool {
	for _, c := range n.cfg.Channels {
		if n.fold(c) == n.fold(channel) {
			return true
		}
	}
	return false
}

// departedTTL bounds how long a disconnected puppet's nick is remembered: its QUIT
// reaches the bot within moments, and a real user may take the nick later.
const departedTTL = time.Minute

// puppetGoneLocked forgets a puppet's nick as it disconnects, remembering it as
// departed so that its QUIT does not look like a remote user leaving.
func (n *network) puppetGoneLocked(p *puppet, nick string) {
	folded := n.fold(nick)
	if nick == "" || n.byNick[folded] != p {
		return
	}
	delete(n.byNick, folded)
	now := time.Now()
	for k, at := range n.departed {
		if now.Sub(at) > departedTTL {
			delete(n.departed, k)
		}
	}
	n.departed[folded] = now
}

// ownNickLocked says whether a folded nick is one of our puppets, connected or just
// disconnected by the bridge; a departed nick is forgotten once its QUIT is seen.
func (n *network) ownNickLocked(folded string, quitting bool) bool {
	if _, ok := n.byNick[folded]; ok {
		return true
	}
	at, ok := n.departed[folded]
	if !ok || time.Since(at) > departedTTL {
		return false
	}
	if quitting {
		delete(n.departed, folded)
	}
	return true
}

// isOurs says whether a nick is the bot or one of our puppets (never a ghost).
func (n *network) isOurs(nick string) bool {
	if n.bot != nil && n.bot.IsMe(nick) {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.byNick[n.fold(nick)]
	return ok
}

// channelInfo makes sure the bot is in the channel and returns it with its members,
// waiting for the NAMES list.
func (n *network) channelInfo(ctx context.Context, channel string) (*bridge.ChatInfo, error) {
	if err := n.waitBot(ctx); err != nil {
		return nil, err
	}
	n.mu.Lock()
	st := n.wantChannelLocked(channel)
	joined, done := st.joined, st.namesDone
	n.mu.Unlock()
	if !joined {
		if err := n.bot.Send(ctx, "JOIN", channel); err != nil {
			return nil, fmt.Errorf("joining %s on %s: %w", channel, n.cfg.Name, err)
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	select {
	case <-done:
	case <-waitCtx.Done():
		return nil, fmt.Errorf("%s on %s did not answer our JOIN", channel, n.cfg.Name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.chatInfoLocked(st), nil
}

// chatInfoLocked describes a channel the bot is in, with its remote members: everyone
// but the bot and our puppets (connected, or loaded and still reconnecting).
func (n *network) chatInfoLocked(st *channelState) *bridge.ChatInfo {
	// Channel traffic is only for those whose puppet is in the channel: new members
	// do not see what was said before they joined (relay networks are open to all).
	info := &bridge.ChatInfo{Key: n.channelKey(st.name), Name: st.name, Topic: st.topic,
		JoinedHistoryOnly: n.cfg.Mode == "puppets"}
	puppetNicks := make(map[string]bool, len(n.puppets))
	for _, p := range n.puppets {
		puppetNicks[n.fold(p.meta.Nick)] = true
	}
	for folded, m := range st.members {
		if n.bot.IsMe(m.nick) || puppetNicks[folded] || n.ownNickLocked(folded, false) {
			continue
		}
		info.Members = append(info.Members, bridge.ChatMember{RemoteID: n.userID(m.nick), Name: m.nick,
			PowerLevel: n.powerFor(m.prefixes)})
	}
	slices.SortFunc(info.Members, func(a, b bridge.ChatMember) int { return strings.Compare(a.RemoteID, b.RemoteID) })
	return info
}

// powerFor maps channel prefixes to a power level (nil: default).
func (n *network) powerFor(prefixes string) *int {
	level := 0
	switch {
	case strings.ContainsAny(prefixes, "~&@"):
		level = n.cfg.PowerLevels.Op
	case strings.Contains(prefixes, "%"):
		level = n.cfg.PowerLevels.HalfOp
	case strings.Contains(prefixes, "+"):
		level = n.cfg.PowerLevels.Voice
	default:
		return nil
	}
	return &level
}

// queue hands a remote event to the core, which retries storing it for as long as the
// bridge runs: only a stopping bridge makes it fail.
func (n *network) queue(ctx context.Context, evt *bridge.RemoteEvent) {
	evt.Chat.Connector = connectorName
	if err := n.c.host.QueueRemoteEvent(ctx, evt); err != nil {
		n.log.Warn().Err(err).Str("remote_event", string(evt.Type)).Msg("IRC event not stored: the bridge is stopping")
	}
}

// msgParam returns a line's i-th parameter, or "".
func msgParam(msg ircmsg.Message, i int) string {
	if i < len(msg.Params) {
		return msg.Params[i]
	}
	return ""
}

// lineIdentity returns a PRIVMSG/NOTICE's message ID (as seen in target) and time.
func lineIdentity(msg ircmsg.Message, network, target string) (string, time.Time) {
	_, msgid := msg.GetTag("msgid")
	when := msgTime(msg)
	return lineID(msgid, network, target, msg.Nick(), msgParam(msg, 1), when.Format(time.RFC3339Nano)), when
}

func msgTime(msg ircmsg.Message) time.Time {
	if ok, ts := msg.GetTag("time"); ok {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			return t
		}
	}
	return time.Now()
}

// handleBot processes the bot connection's events: all channel traffic of bridged
// channels enters the bridge here.
func (n *network) handleBot(ctx context.Context, ev ircconn.Event) {
	switch ev.Kind {
	case ircconn.Connected:
		n.log.Info().Str("nick", n.bot.Nick()).Msg("Bot connected")
		if cm, ok := n.bot.ISupport("CASEMAPPING"); ok && cm != n.casemapping() {
			n.log.Warn().Str("server", cm).Str("configured", n.casemapping()).
				Msg("The server's CASEMAPPING differs from the network's casemapping setting; set it to match before the network is used")
		}
		n.mu.Lock()
		var names []string
		for _, st := range n.channels {
			st.joined = false
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

func (n *network) handleBotLine(ctx context.Context, msg ircmsg.Message) {
	nick := msg.Nick()
	param := func(i int) string { return msgParam(msg, i) }
	switch msg.Command {
	case "JOIN":
		channel := param(0)
		n.mu.Lock()
		st := n.wantChannelLocked(channel)
		if n.bot.IsMe(nick) {
			st.name, st.joined = channel, true
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
		if !puppet {
			// extended-join adds the account (or "*") and the real name.
			sender := bridge.Sender{RemoteID: n.userID(nick), Name: nick, RealName: param(2)}
			if account := param(1); account != "*" {
				sender.Account = account
			}
			n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteJoin, Chat: n.channelKey(channel),
				Sender: sender, Timestamp: msgTime(msg)})
		}
	case "PART":
		channel := param(0)
		n.mu.Lock()
		st := n.wantChannelLocked(channel)
		if n.bot.IsMe(nick) {
			st.joined = false
			n.mu.Unlock()
			return
		}
		delete(st.members, n.fold(nick))
		puppet := n.ownNickLocked(n.fold(nick), false)
		n.mu.Unlock()
		if !puppet {
			n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteLeave, Chat: n.channelKey(channel),
				Sender: bridge.Sender{RemoteID: n.userID(nick), Name: nick}, Reason: param(1), Timestamp: msgTime(msg)})
		}
	case "QUIT":
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
		if isNetsplit(param(0)) || n.inBatch(msg, "netsplit") {
			n.holdSplit(nick, left)
			return
		}
		for _, channel := range left {
			n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteLeave, Chat: n.channelKey(channel),
				Sender: bridge.Sender{RemoteID: n.userID(nick), Name: nick}, Reason: param(0), Timestamp: msgTime(msg)})
		}
	case "NICK":
		newNick := param(0)
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
		// A nick is an identity on IRC: the old nick's ghost leaves and the new one joins,
		// so history keeps saying who said what.
		for _, channel := range in {
			key := n.channelKey(channel)
			n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteLeave, Chat: key, Reason: "Changed nick to " + newNick,
				Sender: bridge.Sender{RemoteID: n.userID(nick), Name: nick}, Timestamp: msgTime(msg)})
			n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteJoin, Chat: key,
				Sender: bridge.Sender{RemoteID: n.userID(newNick), Name: newNick}, Timestamp: msgTime(msg)})
		}
	case "KICK":
		channel, target := param(0), param(1)
		n.mu.Lock()
		st := n.wantChannelLocked(channel)
		delete(st.members, n.fold(target))
		if n.bot.IsMe(target) {
			st.joined = false
		}
		n.mu.Unlock()
		if n.bot.IsMe(target) {
			n.log.Warn().Str("channel", channel).Str("by", nick).Msg("Bot was kicked, rejoining")
			_ = n.bot.Send(ctx, "JOIN", channel)
			return
		}
		if p := n.puppetByNick(target); p != nil {
			p.kicked(ctx, channel, nick, param(2))
			return
		}
		n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteKick, Chat: n.channelKey(channel),
			Sender: bridge.Sender{RemoteID: n.userID(nick), Name: nick}, TargetUser: n.userID(target),
			Reason: param(2), Timestamp: msgTime(msg)})
	case "TOPIC":
		channel := param(0)
		n.mu.Lock()
		n.wantChannelLocked(channel).topic = param(1)
		name := n.wantChannelLocked(channel).name
		n.mu.Unlock()
		key := n.channelKey(channel)
		n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteChatInfo, Chat: key, Timestamp: msgTime(msg),
			Sender:   bridge.Sender{RemoteID: n.userID(nick), Name: nick},
			ChatInfo: &bridge.ChatInfo{Key: key, Name: name, Topic: param(1)}})
	case "332": // RPL_TOPIC on join
		n.mu.Lock()
		n.wantChannelLocked(param(1)).topic = param(2)
		n.mu.Unlock()
	case "353": // RPL_NAMREPLY: me = #chan :@op +voice nick
		channel := param(2)
		n.mu.Lock()
		st := n.wantChannelLocked(channel)
		if st.names == nil {
			st.names = map[string]member{}
		}
		for _, entry := range strings.Fields(param(3)) {
			i := strings.IndexFunc(entry, func(r rune) bool { return !strings.ContainsRune("~&@%+", r) })
			if i < 0 {
				continue
			}
			prefixes := entry[:i]
			entry = entry[i:]
			if bang := strings.IndexByte(entry, '!'); bang >= 0 { // userhost-in-names
				entry = entry[:bang]
			}
			st.names[n.fold(entry)] = member{nick: entry, prefixes: prefixes}
		}
		n.mu.Unlock()
	case "366": // RPL_ENDOFNAMES
		n.mu.Lock()
		st := n.wantChannelLocked(param(1))
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
	case "MODE":
		n.handleMode(ctx, msg)
	case "AWAY":
		// away-notify: a member went away (with a reason) or came back (none).
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
			Sender: bridge.Sender{RemoteID: n.userID(nick), Name: nick}, Reason: param(0)})
	case "BATCH":
		// IRCv3 batch: servers wrap netsplit QUITs in a "netsplit" batch.
		ref := param(0)
		n.mu.Lock()
		if strings.HasPrefix(ref, "+") {
			n.batches[ref[1:]] = param(1)
		} else if strings.HasPrefix(ref, "-") {
			delete(n.batches, ref[1:])
		}
		n.mu.Unlock()
	case "PRIVMSG", "NOTICE":
		n.bridgeChannelLine(ctx, msg)
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
		ID: msgID, Sender: sender, Timestamp: when, Content: content})
}

// standInOwner returns the puppet that bridges a channel's lines while the bot is
// disconnected: the connected puppet in the channel with the smallest login ID, so
// exactly one does.
func (n *network) standInOwner(channel string) *puppet {
	folded := n.fold(channel)
	n.mu.Lock()
	candidates := make([]*puppet, 0, len(n.puppets))
	for _, p := range n.puppets {
		candidates = append(candidates, p)
	}
	n.mu.Unlock()
	var owner *puppet
	for _, p := range candidates {
		p.mu.Lock()
		_, in := p.channels[folded]
		connected := p.conn != nil && p.conn.Connected()
		p.mu.Unlock()
		if in && connected && (owner == nil || p.login.ID < owner.login.ID) {
			owner = p
		}
	}
	return owner
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

// lineContent converts a PRIVMSG/NOTICE text, with CTCP ACTION as an emote. Other CTCP
// requests are not bridged.
func lineContent(command, text string) *bridge.MessageContent {
	msgType := "m.text"
	if command == "NOTICE" {
		msgType = "m.notice"
	}
	if strings.HasPrefix(text, "\x01") {
		inner := strings.TrimSuffix(strings.TrimPrefix(text, "\x01"), "\x01")
		action, ok := strings.CutPrefix(inner, "ACTION ")
		if !ok {
			return nil
		}
		text, msgType = action, "m.emote"
	}
	body, html := ircformat.IRCToMatrix(text)
	return &bridge.MessageContent{MsgType: eventMsgType(msgType), Body: body, FormattedBody: html}
}

func (n *network) puppetByNick(nick string) *puppet {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byNick[n.fold(nick)]
}

// errNotConnected is returned while a connection is down; the core retries.
var errNotConnected = errors.New("not connected to IRC yet")
