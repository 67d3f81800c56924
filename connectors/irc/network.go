package irc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// botInAll is set while the bot is in every channel of channels (see botBridges).
	botInAll atomic.Bool
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

// member is a channel member: their nick as spelled and their prefixes (@, +, …).
type member struct {
	nick     string
	prefixes string
}

// newNetwork sets up a configured network; start connects it.
func newNetwork(c *Connector, cfg *NetworkConfig) *network {
	return &network{c: c, cfg: cfg, log: c.host.Log().With().Str("irc_network", cfg.Name).Logger(),
		channels: map[string]*channelState{}, puppets: map[string]*puppet{}, byNick: map[string]*puppet{}, departed: map[string]time.Time{},
		splits: map[string]*splitQuit{}, consents: map[string]chan bool{}, botUp: make(chan struct{}), batches: map[string]string{},
		folder: foldFor(cfg.Casemapping)}
}

// connConfig is the connection settings of the bot or a puppet on this network.
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

// stop disconnects the puppets and the bot, settling pending netsplits first.
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
		n.noteBotPresenceLocked()
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

// botDown makes waitBot wait for the next bot connection.
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

// casemapping is the configured casemapping, rfc1459 (IRC's default) when unset.
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
	slices.SortFunc(info.Members, func(a, b bridge.ChatMember) int { return strings.Compare(string(a.RemoteID), string(b.RemoteID)) })
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
	return string(lineID(msgid, network, target, msg.Nick(), msgParam(msg, 1), when.Format(time.RFC3339Nano))), when
}

// msgTime is when a line was sent: its server-time tag, else now.
func msgTime(msg ircmsg.Message) time.Time {
	if ok, ts := msg.GetTag("time"); ok {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			return t
		}
	}
	return time.Now()
}

// standInOwner returns the puppet that bridges a channel's lines while the bot is not
// there to (disconnected, or not yet back in the channel after connecting): the
// connected puppet in the channel with the smallest login ID, so exactly one does.
// botBridges says whether the bot bridges a channel's lines now: it is connected and in
// the channel. Every puppet asks this for every channel line it receives, so the usual
// answer (the bot is in all its channels) costs one atomic load.
func (n *network) botBridges(channel []byte) bool {
	if n.bot == nil || !n.bot.Connected() {
		return false
	}
	if n.botInAll.Load() {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.channels[n.fold(string(channel))]
	return st != nil && st.joined
}

// noteBotPresenceLocked records whether the bot is in every channel it wants; called
// wherever a channel's joined state changes or a channel is added.
func (n *network) noteBotPresenceLocked() {
	all := true
	for _, st := range n.channels {
		if !st.joined {
			all = false
			break
		}
	}
	n.botInAll.Store(all)
}

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

// puppetByNick returns the puppet using a nick, or nil.
func (n *network) puppetByNick(nick string) *puppet {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byNick[n.fold(nick)]
}

// errNotConnected is returned while a connection is down; the core retries.
var errNotConnected = errors.New("not connected to IRC yet")
