package bridge

import (
	"fmt"
	"strings"
	"text/template"

	"maunium.net/go/mautrix/event"
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

// SetFormat replaces one format (connectors such as relaybot bring their own).
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
