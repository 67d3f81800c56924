package bridge

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/passerelle/passerelle/bridge/config"
)

func defaultRelayFormatter(t *testing.T) *RelayFormatter {
	t.Helper()
	rf, err := NewRelayFormatter(config.DefaultRelayFormats())
	if err != nil {
		t.Fatal(err)
	}
	return rf
}

var (
	alice      = MatrixSender{MXID: "@alice:example.org", DisplayName: "Alice"}
	aliceTwice = MatrixSender{MXID: "@alice:example.org", DisplayName: "Alice", Disambiguated: "Alice (@alice:example.org)"}
)

// relayMessage builds the outgoing message the way the portal does: Content mirrors the
// Matrix content, with Media set for files.
func relayMessage(sender MatrixSender, content *event.MessageEventContent, media bool) *MatrixMessage {
	msg := &MatrixMessage{Sender: sender, Content: MessageContent{
		MsgType: content.MsgType, Body: content.Body, FormattedBody: content.FormattedBody,
	}}
	if media {
		msg.Content.Media = &Media{FileName: content.GetFileName(), URL: "mxc://example.org/abc"}
	}
	return msg
}

func TestRelayRender(t *testing.T) {
	tests := []struct {
		name        string
		sender      MatrixSender
		content     event.MessageEventContent
		media       bool
		wantBody    string
		wantMsgType event.MessageType
	}{
		{"text", alice, event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}, false, "Alice: hi", event.MsgText},
		{"text with formatting drops the HTML", alice, event.MessageEventContent{MsgType: event.MsgText, Body: "**hi**", Format: event.FormatHTML, FormattedBody: "<b>hi</b>"}, false, "Alice: **hi**", event.MsgText},
		{"notice", alice, event.MessageEventContent{MsgType: event.MsgNotice, Body: "beep"}, false, "Alice: beep", event.MsgNotice},
		{"emote becomes text", alice, event.MessageEventContent{MsgType: event.MsgEmote, Body: "waves"}, false, "* Alice waves", event.MsgText},
		{"image with caption", alice, event.MessageEventContent{MsgType: event.MsgImage, Body: "look", FileName: "cat.png"}, true, "Alice sent cat.png: look", event.MsgImage},
		{"image whose body is its file name", alice, event.MessageEventContent{MsgType: event.MsgImage, Body: "cat.png", FileName: "cat.png"}, true, "Alice sent cat.png", event.MsgImage},
		{"file without filename field", alice, event.MessageEventContent{MsgType: event.MsgFile, Body: "report.pdf"}, true, "Alice sent report.pdf", event.MsgFile},
		{"disambiguated name", aliceTwice, event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}, false, "Alice (@alice:example.org): hi", event.MsgText},
		{"disambiguated emote", aliceTwice, event.MessageEventContent{MsgType: event.MsgEmote, Body: "waves"}, false, "* Alice (@alice:example.org) waves", event.MsgText},
		{"disambiguated media", aliceTwice, event.MessageEventContent{MsgType: event.MsgVideo, Body: "party!", FileName: "party.mp4"}, true, "Alice (@alice:example.org) sent party.mp4: party!", event.MsgVideo},
		{"template characters in the body are not interpreted", alice, event.MessageEventContent{MsgType: event.MsgText, Body: "{{.Sender}} <b>&"}, false, "Alice: {{.Sender}} <b>&", event.MsgText},
	}
	rf := defaultRelayFormatter(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := tt.content
			msg := relayMessage(tt.sender, &content, tt.media)
			if err := rf.Render(msg, &content); err != nil {
				t.Fatal(err)
			}
			if msg.Content.Body != tt.wantBody {
				t.Errorf("body = %q, want %q", msg.Content.Body, tt.wantBody)
			}
			if msg.Content.MsgType != tt.wantMsgType {
				t.Errorf("msgtype = %q, want %q", msg.Content.MsgType, tt.wantMsgType)
			}
			if msg.Content.FormattedBody != "" {
				t.Errorf("formatted body kept: %q", msg.Content.FormattedBody)
			}
			if tt.media && (msg.Content.Media == nil || msg.Content.Media.URL == "") {
				t.Error("media dropped by relay formatting")
			}
		})
	}
}

func TestRelayRenderEdit(t *testing.T) {
	tests := []struct {
		name     string
		sender   MatrixSender
		content  event.MessageEventContent
		wantBody string
	}{
		{"edit", alice, event.MessageEventContent{MsgType: event.MsgText, Body: "fixed"}, "Alice (edit): fixed"},
		{"disambiguated edit", aliceTwice, event.MessageEventContent{MsgType: event.MsgText, Body: "fixed"}, "Alice (@alice:example.org) (edit): fixed"},
		{"edit of an emote", alice, event.MessageEventContent{MsgType: event.MsgEmote, Body: "dances"}, "Alice (edit): dances"},
	}
	rf := defaultRelayFormatter(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := tt.content
			edit := &MatrixEdit{MatrixMessage: *relayMessage(tt.sender, &content, false), TargetIDs: []RemoteMessageID{"r1"}}
			edit.Content.FormattedBody = "<i>x</i>"
			if err := rf.RenderEdit(&edit.MatrixMessage, &content); err != nil {
				t.Fatal(err)
			}
			if edit.Content.Body != tt.wantBody {
				t.Errorf("body = %q, want %q", edit.Content.Body, tt.wantBody)
			}
			if edit.Content.FormattedBody != "" {
				t.Errorf("formatted body kept: %q", edit.Content.FormattedBody)
			}
		})
	}
}

func TestRelayCustomAndMissingFormats(t *testing.T) {
	tests := []struct {
		name     string
		formats  map[string]string
		content  event.MessageEventContent
		wantBody string
	}{
		{"custom text format with user ID", map[string]string{"text": "<{{.SenderName}}|{{.UserID}}> {{.Message}}"},
			event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}, "<Alice|@alice:example.org> hi"},
		{"missing notice format falls back to text", map[string]string{"text": "[{{.Sender}}] {{.Message}}"},
			event.MessageEventContent{MsgType: event.MsgNotice, Body: "beep"}, "[Alice] beep"},
		{"no formats at all", map[string]string{},
			event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}, "Alice: hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rf, err := NewRelayFormatter(tt.formats)
			if err != nil {
				t.Fatal(err)
			}
			content := tt.content
			msg := relayMessage(alice, &content, false)
			if err = rf.Render(msg, &content); err != nil {
				t.Fatal(err)
			}
			if msg.Content.Body != tt.wantBody {
				t.Errorf("body = %q, want %q", msg.Content.Body, tt.wantBody)
			}
		})
	}
}

func TestRelayFormatErrors(t *testing.T) {
	if _, err := NewRelayFormatter(map[string]string{"emote": "{{.Sender"}); err == nil || !strings.Contains(err.Error(), "relay_formats.emote") {
		t.Errorf("unparsable format: error = %v, want one naming bridge.relay_formats.emote", err)
	}
	rf, err := NewRelayFormatter(map[string]string{"text": "{{.NoSuchField}}"})
	if err != nil {
		t.Fatal(err)
	}
	content := event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}
	msg := relayMessage(alice, &content, false)
	if err = rf.Render(msg, &content); err == nil {
		t.Errorf("rendering an unknown field succeeded with %q", msg.Content.Body)
	} else if msg.Content.Body != "hi" {
		t.Errorf("failed render changed the body to %q", msg.Content.Body)
	}
}
