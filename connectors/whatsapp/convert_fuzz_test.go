package whatsapp

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
)

// fuzzClient is a WhatsApp client with no store and no media: what contentFromWA asks of
// one. Other methods are not expected (the embedded nil interface panics on them).
type fuzzClient struct{ Client }

func (fuzzClient) Device() *store.Device { return nil }
func (fuzzClient) DownloadToFile(context.Context, whatsmeow.DownloadableMessage, whatsmeow.File) error {
	return errors.New("no media here")
}

// fuzzHost is a bridge host that names ghosts and has no media spool.
type fuzzHost struct{ bridge.Host }

func (fuzzHost) GhostMXID(remote bridge.RemoteUserID) id.UserID {
	return id.NewUserID("whatsapp_"+id.EncodeUserLocalpart(string(remote)), "example.org")
}
func (fuzzHost) CreateMediaFile(int64) (*bridge.MediaFile, error) {
	return nil, errors.New("no spool here")
}

// FuzzContentFromWA feeds arbitrary WhatsApp message protobufs to the inbound
// converter: it never fails or panics, always gives a message type, carries files only
// as spooled media, and makes only the HTML the formatter writes.
func FuzzContentFromWA(f *testing.F) {
	ci := &waE2E.ContextInfo{StanzaID: proto.String("QUOTED"), MentionedJID: []string{"33612345678@s.whatsapp.net", "bad@@jid"}}
	for _, m := range []*waE2E.Message{
		{Conversation: proto.String("*hello* _there_")},
		{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("@33612345678 see ```this```"), ContextInfo: ci}},
		{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("look"), Mimetype: proto.String("image/png"), FileLength: proto.Uint64(10), ContextInfo: ci}},
		{DocumentMessage: &waE2E.DocumentMessage{FileName: proto.String("a.pdf"), FileLength: proto.Uint64(1 << 40)}},
		{AudioMessage: &waE2E.AudioMessage{PTT: proto.Bool(true), Seconds: proto.Uint32(4)}},
		{LocationMessage: &waE2E.LocationMessage{DegreesLatitude: proto.Float64(48.8), DegreesLongitude: proto.Float64(2.3), Name: proto.String("<b>x</b>")}},
		{ContactMessage: &waE2E.ContactMessage{DisplayName: proto.String("Dan"), Vcard: proto.String("BEGIN:VCARD\nEND:VCARD")}},
		{PollCreationMessage: &waE2E.PollCreationMessage{Name: proto.String("lunch?"), Options: []*waE2E.PollCreationMessage_Option{{OptionName: proto.String("yes")}}}},
		{GroupInviteMessage: &waE2E.GroupInviteMessage{GroupName: proto.String("team")}},
		{},
	} {
		data, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	own := types.NewJID("33600000001", types.DefaultUserServer)
	s := &session{c: &Connector{cfg: &Config{MaxMediaBytes: 1 << 20}, host: fuzzHost{}}, client: fuzzClient{},
		login: &bridge.Login{ID: "login", UserMXID: "@alice:example.org"}, deviceJID: own, log: zerolog.Nop()}
	f.Fuzz(func(t *testing.T, data []byte) {
		var msg waE2E.Message
		if proto.Unmarshal(data, &msg) != nil {
			return
		}
		mc := s.contentFromWA(context.Background(), &msg)
		if mc == nil || mc.MsgType == "" {
			t.Fatalf("%v: converted to %+v, want a message with a type", &msg, mc)
		}
		if mc.Media != nil && mc.Media.Spool == "" && len(mc.Media.Data) == 0 {
			t.Fatalf("%v: media without a file", &msg)
		}
		if mc.Media != nil && mc.MsgType == event.MsgNotice {
			t.Fatalf("%v: a notice carrying a file", &msg)
		}
		for _, u := range mc.Mentions {
			if strings.ContainsAny(string(u), "@:") {
				t.Fatalf("%v: mentions %q, not a ghost ID", &msg, u)
			}
		}
		// Polls add paragraphs of the bridge's own around the escaped question.
		checkWAHTML(t, msg.String(), mc.FormattedBody, append([]string{"p"}, waAllowedTags...))
	})
}
