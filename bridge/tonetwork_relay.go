package bridge

// Matrix → network, relay: a sender without a login of their own speaks through the
// room's relay account, their words rendered through the relay formats.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"text/template"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// RelayFormatter renders messages that leave through a shared (relay) login, so the
// remote side sees who wrote them ("Alice: on our way").
type RelayFormatter struct {
	formats map[string]*template.Template
}

// RelayData is what relay templates can use.
type RelayData struct {
	// Sender is the display name, disambiguated when two members share it.
	Sender string
	// SenderName is the plain display name; UserID the Matrix ID.
	SenderName string
	UserID     string
	Message    string
	Caption    string
	FileName   string
}

// NewRelayFormatter parses the config's relay formats (text, notice, emote, media, edit).
func NewRelayFormatter(formats map[string]string) (*RelayFormatter, error) {
	rf := &RelayFormatter{formats: make(map[string]*template.Template)}
	for name, text := range formats {
		tpl, err := template.New(name).Parse(text)
		if err != nil {
			return nil, fmt.Errorf("bridge.relay_formats.%s: %w", name, err)
		}
		rf.formats[name] = tpl
	}
	return rf, nil
}

// execute renders one format, falling back to text, then to "Sender: Message".
func (rf *RelayFormatter) execute(name string, data RelayData) (string, error) {
	tpl := rf.formats[name]
	if tpl == nil {
		tpl = rf.formats["text"]
	}
	if tpl == nil {
		return data.Sender + ": " + data.Message, nil
	}
	var sb strings.Builder
	if err := tpl.Execute(&sb, data); err != nil {
		return "", fmt.Errorf("rendering relay format %s: %w", name, err)
	}
	return sb.String(), nil
}

func relayData(msg *MatrixMessage, content *event.MessageEventContent) RelayData {
	d := RelayData{Sender: msg.Sender.Disambiguated, SenderName: msg.Sender.DisplayName, UserID: msg.Sender.MXID.String(), Message: content.Body}
	if d.Sender == "" {
		d.Sender = d.SenderName
	}
	if msg.Content.Media != nil {
		d.FileName = content.GetFileName()
		if content.FileName != "" && content.Body != content.FileName {
			d.Caption = content.Body
		}
	}
	return d
}

func formatFor(msgType event.MessageType, hasMedia bool) string {
	switch {
	case hasMedia:
		return "media"
	case msgType == event.MsgEmote:
		return "emote"
	case msgType == event.MsgNotice:
		return "notice"
	default:
		return "text"
	}
}

// Render rewrites a relayed message's body with the matching format. Formatting is
// dropped: the template produces plain text for the whole line.
func (rf *RelayFormatter) Render(msg *MatrixMessage, content *event.MessageEventContent) error {
	body, err := rf.execute(formatFor(content.MsgType, msg.Content.Media != nil), relayData(msg, content))
	if err != nil {
		return err
	}
	msg.Content.Body = body
	msg.Content.FormattedBody = ""
	if content.MsgType == event.MsgEmote {
		// The template already says who did it; an emote would say it twice.
		msg.Content.MsgType = event.MsgText
	}
	return nil
}

// RenderEdit rewrites a relayed edit with the edit format.
func (rf *RelayFormatter) RenderEdit(msg *MatrixMessage, content *event.MessageEventContent) error {
	body, err := rf.execute("edit", relayData(msg, content))
	if err != nil {
		return err
	}
	msg.Content.Body = body
	msg.Content.FormattedBody = ""
	return nil
}

// defaultReactionFormat says a reaction in words where a room renders them.
const defaultReactionFormat = "{{.Sender}} reacted {{.Message}}"

// relayOptions decodes a room's own relay options (nil for the bridge defaults).
func relayOptions(rc *roomContext) (*RelayOptions, error) {
	if rc.room.RelayOptions == "" {
		return nil, nil
	}
	var opts RelayOptions
	if err := json.Unmarshal([]byte(rc.room.RelayOptions), &opts); err != nil {
		return nil, fmt.Errorf("%w: decoding the room's relay options: %v", errPermanent, err)
	}
	return &opts, nil
}

// roomRelay returns the formatter for a relay room (its own formats over the bridge's)
// and whether the name prefix applies: a room that asks for it goes without while only
// one Matrix user handles it.
func (br *Bridge) roomRelay(ctx context.Context, rc *roomContext) (*RelayFormatter, bool, error) {
	opts, err := relayOptions(rc)
	if err != nil || opts == nil {
		return br.relay, true, err
	}
	rf := br.relay
	if len(opts.Formats) > 0 {
		if rf, err = NewRelayFormatter(br.roomFormats(opts)); err != nil {
			return nil, false, fmt.Errorf("%w: %v", errPermanent, err)
		}
	}
	if !opts.NoPrefixWhenAlone {
		return rf, true, nil
	}
	handlers, err := br.relayHandlers(ctx, rc)
	if err != nil {
		return nil, false, err
	}
	return rf, handlers > 1, nil
}

// roomFormats are the bridge's relay formats with a room's own over them.
func (br *Bridge) roomFormats(opts *RelayOptions) map[string]string {
	formats := maps.Clone(br.Config.Bridge.RelayFormats)
	if formats == nil {
		formats = map[string]string{}
	}
	maps.Copy(formats, opts.Formats)
	return formats
}

// relayHandlers counts the Matrix users who speak through a relay room's login: its
// joined users, without the bot, ghosts and the login's own owner.
func (br *Bridge) relayHandlers(ctx context.Context, rc *roomContext) (int, error) {
	// The state store follows the room's membership from the transaction stream: no
	// request to the homeserver per relayed message.
	members, err := br.stateStore().JoinedMembers(ctx, id.RoomID(rc.room.RoomID))
	if err != nil {
		return 0, fmt.Errorf("reading the room's members: %w", err)
	}
	owner := ""
	if login, err := br.DB.GetLogin(ctx, rc.key.Connector, rc.room.RelayLogin); err == nil && login != nil {
		owner = login.MXID
	}
	n := 0
	for u := range members {
		if _, _, ghost := br.ghostConnector(u); u != br.BotMXID() && !ghost && u.String() != owner {
			n++
		}
	}
	return n, nil
}

// relayReactionText sends a relayed reaction as a line of text where the room asks for
// that; otherwise it is dropped quietly.
func (br *Bridge) relayReactionText(ctx context.Context, rc *roomContext, evt *event.Event, sess Session, target string) error {
	opts, err := relayOptions(rc)
	if err != nil || opts == nil || !opts.ReactionsAsText {
		zerolog.Ctx(ctx).Debug().Msg("Dropping relayed reaction")
		return err
	}
	formats := br.roomFormats(opts)
	if formats["reaction"] == "" {
		formats["reaction"] = defaultReactionFormat
	}
	rf, err := NewRelayFormatter(formats)
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	reaction := evt.Content.AsReaction()
	msg := MatrixMessage{Chat: rc.key, RoomID: evt.RoomID, EventID: evt.ID, TxnID: matrixTxnID(evt.ID),
		Sender: br.matrixSender(ctx, evt.RoomID, evt.Sender), Relayed: true, ReplyTo: RemoteMessageID(target)}
	name := msg.Sender.Disambiguated
	if name == "" {
		name = msg.Sender.DisplayName
	}
	body, err := rf.execute("reaction", RelayData{Sender: name, SenderName: msg.Sender.DisplayName,
		UserID: evt.Sender.String(), Message: reaction.RelatesTo.Key})
	if err != nil {
		return err
	}
	msg.Content = MessageContent{MsgType: event.MsgText, Body: body}
	_, err = sess.SendMessage(ctx, &msg)
	return err
}
