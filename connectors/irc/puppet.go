package irc

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc/ircconn"
)

// puppetMeta is what a puppet login stores. The SASL password is a secret: it lives
// only in the login's metadata and is never logged.
type puppetMeta struct {
	Nick         string `json:"nick"`
	SASLUser     string `json:"sasl_user,omitempty"`
	SASLPassword string `json:"sasl_password,omitempty"`
	// Channels are the channels the puppet is in, kept so that a restarted bridge
	// brings the puppet back into them without its user having to speak.
	Channels []string `json:"channels,omitempty"`
}

// puppet is a Matrix user's own connection to a network (their bridge.Session).
type puppet struct {
	n     *network
	login *bridge.Login
	meta  puppetMeta

	mu           sync.Mutex
	conn         *ircconn.Conn
	connected    chan struct{}             // closed while connected
	channels     map[string]string         // folded → name, channels we are (or want to be) in
	joinWaits    map[string]chan struct{}  // closed when our JOIN is seen
	echoWaits    map[echoKey][]chan string // senders waiting for echo-message confirmations
	joinErrs     map[string]string         // why the server refused a JOIN, until the waiter reads it
	replies      map[string][]chan string  // TOPIC/KICK outcomes awaited, by command|channel
	labelSeq     int
	labels       map[string]labeledCommand // labeled-response: commands awaiting an answer
	labelBatches map[string]string         // labeled-response batches: reference → label
	lastActive   time.Time
	nick         string
	// savedChannels is the channel list last written to the login's metadata.
	savedChannels string
}

// eventMsgType names a Matrix message type.
func eventMsgType(t string) event.MessageType { return event.MessageType(t) }

// newPuppetLogin makes the login of a Matrix user's puppet on this network.
func (n *network) newPuppetLogin(user id.UserID, nick string, meta *puppetMeta) *bridge.NewLogin {
	if meta == nil {
		meta = &puppetMeta{}
	}
	if nick == "" {
		nick = n.puppetNick(user)
	}
	meta.Nick = nick
	data, _ := json.Marshal(meta)
	return &bridge.NewLogin{ID: puppetLoginID(n.cfg.Name, user.String()), RemoteName: nick + " on " + n.cfg.Name, Metadata: data}
}

// puppetNick renders the nick template for a Matrix user.
func (n *network) puppetNick(user id.UserID) string {
	tpl, err := template.New("nick").Parse(n.cfg.PuppetNick)
	nick := user.Localpart()
	if err == nil {
		var sb strings.Builder
		if tpl.Execute(&sb, map[string]string{"Localpart": user.Localpart(), "UserID": user.String(), "DisplayName": user.Localpart()}) == nil {
			nick = sb.String()
		}
	}
	return sanitizeNick(nick, 30)
}

// loadPuppet makes the puppet of a stored login, taking over the channels of one it
// replaces (a new login of the same user).
func (n *network) loadPuppet(login *bridge.Login) (*puppet, error) {
	var meta puppetMeta
	if len(login.Metadata) > 0 {
		if err := json.Unmarshal(login.Metadata, &meta); err != nil {
			return nil, fmt.Errorf("reading IRC login metadata: %w", err)
		}
	}
	if meta.Nick == "" {
		meta.Nick = n.puppetNick(login.UserMXID)
	}
	p := &puppet{n: n, login: login, meta: meta, connected: make(chan struct{}),
		channels: map[string]string{}, joinWaits: map[string]chan struct{}{}, lastActive: time.Now()}
	for _, ch := range meta.Channels {
		p.channels[n.fold(ch)] = ch
	}
	p.savedChannels = strings.Join(meta.Channels, " ")
	n.mu.Lock()
	if old := n.puppets[string(login.ID)]; old != nil {
		for k, v := range old.channels {
			p.channels[k] = v
		}
	}
	n.puppets[string(login.ID)] = p
	n.mu.Unlock()
	return p, nil
}

// Connect implements bridge.Session.
func (p *puppet) Connect(ctx context.Context) {
	p.mu.Lock()
	if p.conn != nil {
		p.mu.Unlock()
		return
	}
	cfg := p.n.connConfig(p.meta.Nick, p.meta.SASLUser, p.meta.SASLPassword)
	cfg.SkipChannelText = p.skipsChannelText
	p.conn = ircconn.New(cfg, p.handle)
	conn := p.conn
	p.mu.Unlock()
	p.n.c.host.ReportState(ctx, p.login.ID, bridge.StateConnecting, "")
	conn.Start(p.n.c.runCtx)
	if p.n.cfg.IdleTimeout > 0 {
		go p.idleWatch(conn)
	}
}

// Disconnect implements bridge.Session.
func (p *puppet) Disconnect() {
	p.mu.Lock()
	conn, nick := p.conn, p.nick
	p.conn = nil
	p.mu.Unlock()
	// Marked departed before the QUIT goes out, so the bot never takes it for a
	// remote user leaving.
	p.n.mu.Lock()
	p.n.puppetGoneLocked(p, nick)
	p.n.mu.Unlock()
	if conn != nil {
		conn.Stop("Disconnected by the bridge")
	}
}

// Logout implements bridge.Session.
func (p *puppet) Logout(ctx context.Context) error {
	p.Disconnect()
	p.n.mu.Lock()
	if p.n.puppets[string(p.login.ID)] == p {
		delete(p.n.puppets, string(p.login.ID))
	}
	p.n.mu.Unlock()
	return nil
}

// CanReach implements bridge.ChatFilteringSession: a puppet reaches its own network's channels and
// its own private chats.
func (p *puppet) CanReach(chat bridge.PortalKey) bool {
	pc, err := parseChatID(chat.ChatID)
	return err == nil && pc.network == p.n.cfg.Name && (chat.Receiver == "" || chat.Receiver == p.login.ID)
}

// idleWatch disconnects the puppet once it has been idle for the network's
// idle_timeout, saving connections; it reconnects when its user next needs it.
func (p *puppet) idleWatch(conn *ircconn.Conn) {
	tick := time.NewTicker(p.n.cfg.IdleTimeout / 4)
	defer tick.Stop()
	for range tick.C {
		p.mu.Lock()
		current, idle := p.conn == conn, time.Since(p.lastActive) > p.n.cfg.IdleTimeout
		p.mu.Unlock()
		if !current {
			return
		}
		if idle {
			p.Disconnect()
			p.n.c.host.ReportState(context.Background(), p.login.ID, bridge.StateDisconnected, "idle")
			return
		}
	}
}

// ready reconnects an idle-disconnected puppet and waits for the connection.
func (p *puppet) ready(ctx context.Context) (*ircconn.Conn, error) {
	p.mu.Lock()
	p.lastActive = time.Now()
	needConnect := p.conn == nil
	p.mu.Unlock()
	if needConnect {
		p.Connect(ctx)
	}
	p.mu.Lock()
	conn, connected := p.conn, p.connected
	p.mu.Unlock()
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case <-connected:
		return conn, nil
	case <-waitCtx.Done():
		return nil, fmt.Errorf("%w: %s on %s", errNotConnected, p.meta.Nick, p.n.cfg.Name)
	}
}

// ensureJoined joins a channel and waits until the server confirms it.
func (p *puppet) ensureJoined(ctx context.Context, conn *ircconn.Conn, channel string) error {
	folded := p.n.fold(channel)
	p.mu.Lock()
	wait, pending := p.joinWaits[folded]
	_, joined := p.channels[folded]
	if joined && !pending {
		p.mu.Unlock()
		return nil
	}
	if !pending {
		wait = make(chan struct{})
		p.joinWaits[folded] = wait
	}
	p.channels[folded] = channel
	p.mu.Unlock()
	if !pending {
		if err := p.sendLabeled(ctx, conn, "JOIN", channel); err != nil {
			return fmt.Errorf("joining %s: %w", channel, err)
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	select {
	case <-wait:
		p.mu.Lock()
		reason, refused := p.joinErrs[folded]
		delete(p.joinErrs, folded)
		p.mu.Unlock()
		if refused {
			return bridge.NewUserError("%s on %s refused to let you in: %s", channel, p.n.cfg.Name, reason)
		}
		return nil
	case <-waitCtx.Done():
		return fmt.Errorf("%s did not let %s join", channel, p.meta.Nick)
	}
}

// joinRefused records why the server refused a JOIN and wakes its waiter.
func (p *puppet) joinRefused(channel, reason string) {
	folded := p.n.fold(channel)
	p.mu.Lock()
	defer p.mu.Unlock()
	w, pending := p.joinWaits[folded]
	if !pending {
		return
	}
	if p.joinErrs == nil {
		p.joinErrs = map[string]string{}
	}
	p.joinErrs[folded] = reason
	delete(p.joinWaits, folded)
	delete(p.channels, folded)
	close(w)
}

// currentConn is the puppet's connection, nil while disconnected by the bridge.
func (p *puppet) currentConn() *ircconn.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn
}

// markDisconnected makes senders wait for the next connection (see ready).
func (p *puppet) markDisconnected() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.connected:
		p.connected = make(chan struct{})
	default:
	}
}

// saveChannels records the channels the puppet is in (or rejoining after a reconnect)
// in its login, when they changed. It runs when the server confirms a JOIN or the
// puppet leaves a channel, so the record follows what IRC shows.
func (p *puppet) saveChannels(ctx context.Context) {
	p.n.mu.Lock()
	current := p.n.puppets[string(p.login.ID)] == p
	p.n.mu.Unlock()
	if !current {
		return // replaced by a new login (its metadata is newer), or logged out
	}
	p.mu.Lock()
	list := make([]string, 0, len(p.channels))
	for _, name := range p.channels {
		list = append(list, name)
	}
	slices.Sort(list)
	joined := strings.Join(list, " ")
	if joined == p.savedChannels {
		p.mu.Unlock()
		return
	}
	p.savedChannels = joined
	p.meta.Channels = list
	data, err := json.Marshal(p.meta)
	p.mu.Unlock()
	if err == nil {
		err = p.n.c.host.UpdateLoginMetadata(ctx, p.login.ID, data)
	}
	if err != nil {
		// Only a restart loses anything: the puppet would wait for its user to speak.
		p.n.log.Warn().Err(err).Str("login_id", string(p.login.ID)).Msg("Saving the puppet's channels failed")
	}
}

// target resolves where a chat's lines go: the channel (joined first) or the nick.
func (p *puppet) target(ctx context.Context, conn *ircconn.Conn, chat bridge.PortalKey) (string, error) {
	pc, err := parseChatID(chat.ChatID)
	if err != nil {
		return "", err
	}
	if pc.channel != "" {
		p.n.mu.Lock()
		name := p.n.wantChannelLocked(pc.channel).name
		p.n.mu.Unlock()
		return name, p.ensureJoined(ctx, conn, name)
	}
	return p.n.displayNick(pc.nick), nil
}

// RelaysNatively implements bridge.NativeRelaySession: a relay account's puppet with
// draft/relaymsg shows who each relayed line is from.
func (p *puppet) RelaysNatively(msg *bridge.MatrixMessage) bool {
	return p.n.relaysNatively(p.currentConn(), msg)
}

// SendMessage implements bridge.Session: the message is rendered by the outbound
// renderer and delivered on the user's own connection.
func (p *puppet) SendMessage(ctx context.Context, msg *bridge.MatrixMessage) (*bridge.SendResult, error) {
	conn, err := p.ready(ctx)
	if err != nil {
		return nil, err
	}
	target, err := p.target(ctx, conn, msg.Chat)
	if err != nil {
		return nil, err
	}
	out, err := p.n.renderOutbound(ctx, conn, target, msg)
	if err != nil {
		return nil, err
	}
	return p.deliver(ctx, conn, out, msg.TxnID)
}

// deliver sends rendered lines and names each as the bridge will remember it. With
// echo-message the server repeats each line back once it accepted it: that is the
// delivery confirmation, and it carries the line's msgid.
func (p *puppet) deliver(ctx context.Context, conn *ircconn.Conn, out *outbound, txnID string) (*bridge.SendResult, error) {
	res := &bridge.SendResult{Timestamp: time.Now()}
	target := out.params[0]
	echoes := make([]chan string, len(out.lines))
	for i, line := range out.lines {
		if out.echoed {
			echoes[i] = p.expectEcho(target, line)
		}
		if err := conn.Send(ctx, out.command, out.args(line)...); err != nil {
			for j := 0; j < i; j++ { // the lines that did go out
				res.RemoteIDs = append(res.RemoteIDs, bridge.RemoteMessageID(outLineID(txnID, j)))
			}
			return res, fmt.Errorf("sending line %d/%d: %w", i+1, len(out.lines), err)
		}
	}
	res.RemoteIDs = p.confirmLines(ctx, target, txnID, echoes, out.echoed)
	return res, nil
}

// confirmLines waits for the echoes of sent lines (when confirm) and returns the lines'
// remote IDs: the msgid an echo carried, else one made from the transaction ID.
func (p *puppet) confirmLines(ctx context.Context, target, txnID string, echoes []chan string, confirm bool) []bridge.RemoteMessageID {
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var ids []bridge.RemoteMessageID
	for i := range echoes {
		remoteID := outLineID(txnID, i)
		if confirm {
			select {
			case msgid := <-echoes[i]:
				if msgid != "" {
					remoteID = "msgid:" + msgid
				}
			case <-waitCtx.Done():
				// The line was written; only its echo is missing. Sending it again could
				// repeat it in the channel, so it counts as sent.
				p.n.log.Warn().Str("target", target).Int("line", i+1).Msg("IRC server did not confirm a line in time")
				confirm = false
			}
		}
		ids = append(ids, bridge.RemoteMessageID(remoteID))
	}
	return ids
}

// outLineID names a line a puppet sent when the server gave it no msgid.
func outLineID(txnID string, line int) string { return fmt.Sprintf("out:%s:%d", txnID, line) }

// echoKey identifies an echoed line: its folded target and its text.
type echoKey struct{ target, text string }

// expectEcho registers interest in the server's echo of a line we are about to send.
func (p *puppet) expectEcho(target, text string) chan string {
	ch := make(chan string, 1)
	key := echoKey{p.n.fold(target), text}
	p.mu.Lock()
	if p.echoWaits == nil {
		p.echoWaits = map[echoKey][]chan string{}
	}
	p.echoWaits[key] = append(p.echoWaits[key], ch)
	p.mu.Unlock()
	return ch
}

// gotEcho hands an echoed line's msgid to the oldest sender waiting for it.
func (p *puppet) gotEcho(msg ircmsg.Message) {
	if len(msg.Params) < 2 {
		return
	}
	key := echoKey{p.n.fold(msg.Params[0]), msg.Params[1]}
	_, msgid := msg.GetTag("msgid")
	p.mu.Lock()
	defer p.mu.Unlock()
	waits := p.echoWaits[key]
	if len(waits) == 0 {
		return
	}
	waits[0] <- msgid
	if len(waits) == 1 {
		delete(p.echoWaits, key)
	} else {
		p.echoWaits[key] = waits[1:]
	}
}

// SendEdit implements bridge.EditingSession: IRC has no edits, so the new text is sent as
// a correction line.
func (p *puppet) SendEdit(ctx context.Context, edit *bridge.MatrixEdit) (*bridge.SendResult, error) {
	_, err := p.SendMessage(ctx, correction(edit))
	return nil, err
}

// SendMembership implements bridge.MembershipSession: the user's joins and leaves of a
// portal become JOIN/PART; kicking a ghost becomes KICK (when the puppet has ops).
func (p *puppet) SendMembership(ctx context.Context, m *bridge.MatrixMembership) error {
	pc, err := parseChatID(m.Chat.ChatID)
	if err != nil || pc.channel == "" {
		return err
	}
	self := m.Target == m.Sender.MXID
	switch {
	case self && m.Membership == event.MembershipJoin:
		conn, err := p.ready(ctx)
		if err != nil {
			return err
		}
		_, err = p.target(ctx, conn, m.Chat)
		return err
	case self && (m.Membership == event.MembershipLeave || m.Membership == event.MembershipBan):
		conn := p.currentConn()
		if conn == nil {
			return nil
		}
		p.mu.Lock()
		name, in := p.channels[p.n.fold(pc.channel)]
		delete(p.channels, p.n.fold(pc.channel))
		p.mu.Unlock()
		if !in {
			return nil
		}
		p.saveChannels(ctx)
		return conn.Send(ctx, "PART", name, "left the Matrix room")
	case !self && m.TargetRemote != "" && m.Membership == event.MembershipLeave:
		conn, err := p.ready(ctx)
		if err != nil {
			return err
		}
		_, nick, _ := splitRemoteUser(m.TargetRemote)
		channel := p.n.wantChannelName(pc.channel)
		result := p.expectReply("KICK", channel)
		if err = p.sendLabeled(ctx, conn, "KICK", channel, p.n.displayNick(nick), m.Reason); err != nil {
			return err
		}
		return p.awaitReply(ctx, result, "kick "+p.n.displayNick(nick)+" from "+channel)
	}
	return nil
}

// SendRoomMeta implements bridge.RoomMetaSession: a topic change becomes TOPIC.
func (p *puppet) SendRoomMeta(ctx context.Context, chat bridge.PortalKey, name, topic *string) error {
	pc, err := parseChatID(chat.ChatID)
	if err != nil || pc.channel == "" || topic == nil {
		return err
	}
	conn, err := p.ready(ctx)
	if err != nil {
		return err
	}
	target, err := p.target(ctx, conn, chat)
	if err != nil {
		return err
	}
	result := p.expectReply("TOPIC", target)
	if err = p.sendLabeled(ctx, conn, "TOPIC", target, *topic); err != nil {
		return err
	}
	return p.awaitReply(ctx, result, "change the topic of "+target)
}

// expectReply registers interest in the outcome of a channel command (its echo, or an
// error numeric such as 482 "not channel operator").
func (p *puppet) expectReply(command, channel string) chan string {
	ch := make(chan string, 1)
	key := command + "|" + p.n.fold(channel)
	p.mu.Lock()
	if p.replies == nil {
		p.replies = map[string][]chan string{}
	}
	p.replies[key] = append(p.replies[key], ch)
	p.mu.Unlock()
	return ch
}

// settleReply hands a command's outcome ("" for success, else the server's reason) to
// the oldest waiter.
func (p *puppet) settleReply(command, channel, failure string) {
	key := command + "|" + p.n.fold(channel)
	p.mu.Lock()
	defer p.mu.Unlock()
	waits := p.replies[key]
	if len(waits) == 0 {
		return
	}
	waits[0] <- failure
	if len(waits) == 1 {
		delete(p.replies, key)
	} else {
		p.replies[key] = waits[1:]
	}
}

// awaitReply turns a refusal into an error the user is shown; no answer in time is
// taken as success (servers need not echo everything).
func (p *puppet) awaitReply(ctx context.Context, result chan string, what string) error {
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case failure := <-result:
		if failure != "" {
			return bridge.NewUserError("IRC did not let you %s: %s", what, failure)
		}
	case <-waitCtx.Done():
	}
	return nil
}

// wantChannelName returns a channel's name as spelled, recording that the bot should
// be in it.
func (n *network) wantChannelName(folded string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.wantChannelLocked(folded).name
}

// SendRedaction implements bridge.RedactingSession. IRC cannot delete a line: with a
// redaction_notice configured, a short notice says a message was deleted; without one
// the sender is told it stays on IRC.
func (p *puppet) SendRedaction(ctx context.Context, r *bridge.MatrixRedaction) error {
	if r.IsReaction {
		return nil // reactions never reached IRC
	}
	if p.n.cfg.RedactionNotice == "" {
		return bridge.NewUserError("IRC cannot delete messages: it stays visible there")
	}
	conn, err := p.ready(ctx)
	if err != nil {
		return err
	}
	target, err := p.target(ctx, conn, r.Chat)
	if err != nil {
		return err
	}
	notice, err := p.n.redactionNotice(conn.Nick())
	if err != nil {
		return err
	}
	if err = conn.Send(ctx, "NOTICE", target, notice); err != nil {
		return fmt.Errorf("sending the redaction notice to %s: %w", target, err)
	}
	return nil
}

// SendReaction implements bridge.ReactingSession. IRC has no reactions, so they are
// shown the way people write them there: an action line ("* alice reacted 👍 to bob").
func (p *puppet) SendReaction(ctx context.Context, r *bridge.MatrixReaction) (bridge.RemoteMessageID, error) {
	conn, err := p.ready(ctx)
	if err != nil {
		return "", err
	}
	target, err := p.target(ctx, conn, r.Chat)
	if err != nil {
		return "", err
	}
	if err = conn.Send(ctx, "PRIVMSG", target, p.n.reactionLine(r)); err != nil {
		return "", fmt.Errorf("sending the reaction to %s: %w", target, err)
	}
	return bridge.RemoteMessageID("reaction:" + r.TxnID), nil
}

// labeledCommand is a command sent with an IRCv3 label, awaiting its response.
type labeledCommand struct{ command, channel string }

// sendLabeled sends a channel command; with labeled-response it carries a label, so the
// server's answer is matched to it exactly (even an error numeric that does not name
// the channel).
func (p *puppet) sendLabeled(ctx context.Context, conn *ircconn.Conn, command string, params ...string) error {
	if !conn.HasCap("labeled-response") || len(params) == 0 {
		return conn.Send(ctx, command, params...)
	}
	p.mu.Lock()
	p.labelSeq++
	label := "pl" + strconv.Itoa(p.labelSeq)
	if p.labels == nil {
		p.labels = map[string]labeledCommand{}
	}
	p.labels[label] = labeledCommand{command: command, channel: params[0]}
	p.mu.Unlock()
	return conn.SendMsg(ctx, ircmsg.MakeMessage(map[string]string{"label": label}, "", command, params...))
}

// labeledOutcome settles a labeled command from its response. It returns true when the
// line was a labeled error (handled here).
func (p *puppet) labeledOutcome(msg ircmsg.Message) bool {
	if msg.Command == "BATCH" && len(msg.Params) > 0 && strings.HasPrefix(msg.Params[0], "-") {
		p.mu.Lock()
		delete(p.labelBatches, msg.Params[0][1:])
		p.mu.Unlock()
	}
	ok, label := msg.GetTag("label")
	if !ok {
		if ok, ref := msg.GetTag("batch"); ok {
			p.mu.Lock()
			label = p.labelBatches[ref]
			p.mu.Unlock()
		}
	}
	if label == "" {
		return false
	}
	p.mu.Lock()
	cmd, known := p.labels[label]
	if msg.Command == "BATCH" && len(msg.Params) > 0 && strings.HasPrefix(msg.Params[0], "+") {
		// The response comes as a batch: its lines carry the batch, not the label.
		if p.labelBatches == nil {
			p.labelBatches = map[string]string{}
		}
		p.labelBatches[msg.Params[0][1:]] = label
		p.mu.Unlock()
		return true
	}
	delete(p.labels, label)
	p.mu.Unlock()
	if !known {
		return false
	}
	if len(msg.Command) == 3 && (msg.Command[0] == '4' || msg.Command[0] == '5') {
		reason := msg.Params[len(msg.Params)-1]
		if cmd.command == "JOIN" {
			p.joinRefused(cmd.channel, reason)
		} else {
			p.settleReply(cmd.command, cmd.channel, reason)
		}
		return true
	}
	return false
}
