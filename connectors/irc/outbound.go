package irc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/template"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc/ircconn"
	"github.com/passerelle/passerelle/connectors/irc/ircformat"
)

// This file is the IRC connector's one outbound renderer: everything a Matrix user
// says reaches IRC through it, whether their own puppet carries it or the network's
// bot relays it, so a message reads the same on IRC whichever connection sends it.
// The connections only deliver what it renders.

// outbound is a Matrix message rendered for IRC: the command, the parameters that come
// before the text, and the text of each line as it goes on the wire.
type outbound struct {
	// command is PRIVMSG, NOTICE (for m.notice) or RELAYMSG (draft/relaymsg).
	command string
	// params come before each line: the target, and for RELAYMSG the nick shown.
	params []string
	// lines fit one IRC line each, CTCP ACTION wrapping included.
	lines []string
	// echoed says whether the server's echo-message echoes show these lines as the
	// connection's own, so that an echo confirms a line (a RELAYMSG echo names the
	// relayed nick instead).
	echoed bool
}

// args returns the parameters of the command that carries one line.
func (o *outbound) args(line string) []string {
	return append(slices.Clip(o.params), line)
}

// renderOutbound renders a Matrix message for conn to send to target (a channel or a
// nick). It may publish a long message as a link, hence the context.
func (n *network) renderOutbound(ctx context.Context, conn *ircconn.Conn, target string, msg *bridge.MatrixMessage) (*outbound, error) {
	out := &outbound{command: "PRIVMSG", params: []string{target}, echoed: conn.HasCap("echo-message")}
	text := n.outboundText(msg)
	ctcp := false
	switch msg.Content.MsgType {
	case event.MsgNotice:
		out.command = "NOTICE"
	case event.MsgEmote:
		ctcp = true
	}
	if msg.RelayNative {
		// A relay account speaking for a team member in a channel: with draft/relaymsg the
		// server shows the line as coming from "Name/m", as written, without a name prefix.
		if !relayMsgApplies(conn, target, msg) {
			// The connection changed since the core asked (a reconnect to a server
			// without draft/relaymsg): never send it unattributed; the retry is asked
			// again and carries the name in the text.
			return nil, fmt.Errorf("%s can no longer show who a relayed line is from", target)
		}
		out.command, out.params, out.echoed, ctcp = "RELAYMSG", []string{target, relayNick(msg.Sender)}, false, false
	}
	limit := ircformat.MaxMessageBytes(0, target)
	if ctcp {
		limit -= len(ctcpAction(""))
	}
	lines, err := n.fitLines(ctx, msg, text, limit)
	if err != nil {
		return nil, err
	}
	if ctcp {
		for i, line := range lines {
			lines[i] = ctcpAction(line)
		}
	}
	out.lines = lines
	return out, nil
}

// outboundText is what a message says on IRC: its text with formatting as IRC codes and
// pills as nicks, a file as its link, and a reply addressed to whom it answers.
func (n *network) outboundText(msg *bridge.MatrixMessage) string {
	text := n.ircText(&msg.Content)
	if msg.Content.Media != nil {
		text = mediaText(msg.Content)
	}
	// IRC has no reply threads: address the person replied to, as people do on IRC.
	if msg.ReplyToSender != "" {
		if nick := n.mentionName(msg.ReplyToSender.String(), msg.ReplyToSender.Localpart()); nick != "" &&
			!strings.HasPrefix(strings.ToLower(text), strings.ToLower(nick)) {
			text = nick + ": " + text
		}
	}
	return text
}

// ircText converts Matrix content to IRC text, pills becoming the nicks IRC users know.
func (n *network) ircText(c *bridge.MessageContent) string {
	return ircformat.MatrixToIRCWith(c.Body, c.FormattedBody, ircformat.Options{MentionName: n.mentionName})
}

// relayMsgApplies says whether a relayed message can go out with draft/relaymsg: only
// in channels (the spec's scope), only where the server offers it, and not for files,
// which keep the relay format's wording ("Rita sent photo.jpg") with their link.
func relayMsgApplies(conn *ircconn.Conn, target string, msg *bridge.MatrixMessage) bool {
	return conn != nil && isChannel(target) && conn.HasCap("draft/relaymsg") && msg.Content.Media == nil
}

// relaysNatively answers bridge.NativeRelaySession for a connection relaying into a
// chat: draft/relaymsg names the sender, so the core leaves its relay format out.
func (n *network) relaysNatively(conn *ircconn.Conn, msg *bridge.MatrixMessage) bool {
	pc, err := parseChatID(msg.Chat.ChatID)
	if err != nil || pc.channel == "" || conn == nil || !conn.Connected() {
		return false
	}
	return relayMsgApplies(conn, n.wantChannelName(pc.channel), msg)
}

// fitLines splits text into IRC lines of at most limit bytes. A message longer than the
// network's max_lines would flood the channel: it goes as its first line and a link to
// the whole text instead, or is refused when the bridge serves no public links.
func (n *network) fitLines(ctx context.Context, msg *bridge.MatrixMessage, text string, limit int) ([]string, error) {
	lines := ircformat.SplitLines(text, limit)
	if len(lines) <= n.cfg.MaxLines {
		return lines, nil
	}
	link, err := n.c.host.PublicTextLink(ctx, msg.Content.Body, "message.txt")
	if err != nil {
		return nil, fmt.Errorf("publishing a %d-line message as a link: %w", len(lines), err)
	} else if link == "" {
		return nil, bridge.NewUserError("the message is %d IRC lines long; the limit on %s is %d", len(lines), n.cfg.Name, n.cfg.MaxLines)
	}
	suffix := "(full message: " + link + ")"
	if first := ircformat.SplitLines(lines[0], limit-len(suffix)-len(" … ")); len(first) > 0 {
		suffix = first[0] + " … " + suffix
	}
	return []string{suffix}, nil
}

// ctcpAction wraps text as a CTCP ACTION, IRC's "/me".
func ctcpAction(text string) string { return "\x01ACTION " + text + "\x01" }

// mediaText is what IRC users see for a file: its link when the bridge serves media
// publicly, else what it was.
func mediaText(c bridge.MessageContent) string {
	m := c.Media
	name := m.FileName
	if name == "" {
		name = "a file"
	}
	caption := ""
	if c.Body != "" && c.Body != m.FileName {
		caption = c.Body + " "
	}
	if m.PublicURL != "" {
		return fmt.Sprintf("%s%s", caption, m.PublicURL)
	}
	return fmt.Sprintf("%ssent %s (%s, %d bytes; no public link is configured)", caption, name, m.MimeType, m.Size)
}

// mentionName turns a pill into the nick IRC users know: a ghost's nick, or the nick
// of a Matrix user's puppet, else their display name.
func (n *network) mentionName(userID, displayName string) string {
	if remote, ok := n.c.host.ParseGhostMXID(id.UserID(userID)); ok {
		if netName, nick, ok := splitRemoteUser(remote); ok && netName == n.cfg.Name {
			return n.displayNick(nick)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if other := n.puppets[string(puppetLoginID(n.cfg.Name, userID))]; other != nil && other.nick != "" {
		return other.nick
	}
	return displayName
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

// correction is the message an edit becomes: IRC has no edits, so the new text goes
// out as a correction line ("* fixed text"), as people write them there. Its TxnID
// differs from the edited message's, so the two never share remote IDs.
func correction(edit *bridge.MatrixEdit) *bridge.MatrixMessage {
	msg := edit.MatrixMessage
	msg.Content.Body = "* " + msg.Content.Body
	if msg.Content.FormattedBody != "" {
		msg.Content.FormattedBody = "* " + msg.Content.FormattedBody
	}
	msg.TxnID = "edit-" + msg.TxnID
	return &msg
}

// reactionLine renders a reaction the way people write them on IRC, an action line
// ("* alice reacted 👍 to bob"), as IRC has no reactions.
func (n *network) reactionLine(r *bridge.MatrixReaction) string {
	text := "reacted " + r.Emoji
	if r.TargetSender != "" {
		text += " to " + n.mentionName(r.TargetSender.String(), r.TargetSender.Localpart())
	}
	return ctcpAction(text)
}

// redactionNotice renders the network's redaction_notice for a deletion by nick: IRC
// cannot delete a line, so the channel is told instead.
func (n *network) redactionNotice(nick string) (string, error) {
	tpl, err := template.New("redaction").Parse(n.cfg.RedactionNotice)
	if err != nil {
		return "", fmt.Errorf("parsing redaction_notice of %s: %w", n.cfg.Name, err)
	}
	var sb strings.Builder
	if err = tpl.Execute(&sb, map[string]string{"Nick": nick}); err != nil {
		return "", fmt.Errorf("rendering redaction_notice of %s: %w", n.cfg.Name, err)
	}
	return sb.String(), nil
}
