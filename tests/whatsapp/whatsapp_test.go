package whatsapp

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/proto/waWeb"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/whatsapp/fakewa"
	"github.com/passerelle/passerelle/tests/harness"
)

func TestWhatsApp(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			v := newVariant(t, "wa", db, 3)
			conn := v.testQRLogin(t)
			dm := v.testIncomingMessages(t, conn)
			v.testOutgoingMessages(t, conn, dm)
			v.testOwnDevice(t, conn, dm)
			v.testGroup(t, conn)
			v.testIdentity(t, conn, dm)
			v.testPM(t, conn)
			v.testSecondUser(t)
			v.testHistorySync(t, conn)
			v.testDisappearing(t, conn, dm)
			v.testRemoteLogout(t, conn)
			conn = v.testPairingCodeLogin(t)
			conn = v.testRestart(t, conn)
			conn = v.testReconnect(t, conn)
			v.testClientOutdated(t, conn)
			v.testLogout(t, conn)
		})
	}
}

// testQRLogin: `login whatsapp` posts QR images, replaced on rotation, and a scan logs
// in; a timed-out QR and a cancelled login say so.
func (v *variant) testQRLogin(t *testing.T) *fakewa.Conn {
	ctx := v.ctx()
	v.mgmt = v.managementRoom(v.alice)

	// A login whose QR codes run out.
	if _, err := v.alice.SendText(ctx, v.mgmt, "login whatsapp"); err != nil {
		t.Fatal(err)
	}
	conn, err := v.wa.WaitConn(ctx, fakewa.Unpaired)
	if err != nil {
		t.Fatal(err)
	}
	if !conn.QR {
		t.Fatal("the QR channel was not requested before connecting")
	}
	if err = conn.SendQR(ctx, "2@first-code", time.Minute); err != nil {
		t.Fatal(err)
	}
	first := v.waitQRImage(t, "")
	if err = conn.QREvent(ctx, "timeout"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.WaitEvent(ctx, v.mgmt, noticeFrom(bot(), "QR code expired", "login whatsapp")); err != nil {
		t.Fatal(err)
	}

	// A login the user cancels.
	if _, err = v.alice.SendText(ctx, v.mgmt, "login whatsapp"); err != nil {
		t.Fatal(err)
	}
	conn, err = v.wa.WaitConn(ctx, func(c *fakewa.Conn) bool { return fakewa.Unpaired(c) && c != conn })
	if err != nil {
		t.Fatal(err)
	}
	if err = conn.SendQR(ctx, "2@cancel-code", time.Minute); err != nil {
		t.Fatal(err)
	}
	second := v.waitQRImage(t, first.ID)
	v.command(v.alice, v.mgmt, "cancel", "cancel")

	// The login that succeeds, with a rotated code on the way.
	if _, err = v.alice.SendText(ctx, v.mgmt, "login whatsapp"); err != nil {
		t.Fatal(err)
	}
	old := conn
	conn, err = v.wa.WaitConn(ctx, func(c *fakewa.Conn) bool { return fakewa.Unpaired(c) && c != old })
	if err != nil {
		t.Fatal(err)
	}
	if err = conn.SendQR(ctx, "2@code-one", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	image := v.waitQRImage(t, second.ID)
	if err = conn.SendQR(ctx, "2@code-two", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.WaitEvent(ctx, v.mgmt, func(e *event.Event) bool {
		m := e.Content.AsMessage()
		return e.Sender == bot() && m.RelatesTo != nil && m.RelatesTo.GetReplaceID() == image.ID &&
			m.NewContent != nil && m.NewContent.MsgType == event.MsgImage
	}); err != nil {
		t.Fatalf("the rotated QR code did not replace the image: %v", err)
	}
	device := types.NewADJID(v.alicePhone, 0, 7)
	if err = conn.PairSuccess(ctx, device, "Alice"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.WaitEvent(ctx, v.mgmt, noticeFrom(bot(), "Logged in to WhatsApp as +"+v.alicePhone)); err != nil {
		t.Fatal(err)
	}
	v.command(v.alice, v.mgmt, "logins", "+"+v.alicePhone, "connected")
	return conn
}

// waitQRImage waits for a new QR image (not an edit) other than after.
func (v *variant) waitQRImage(t *testing.T, after id.EventID) *event.Event {
	t.Helper()
	ctx := v.ctx()
	evt, err := v.alice.WaitEvent(ctx, v.mgmt, func(e *event.Event) bool {
		m := e.Content.AsMessage()
		return e.Sender == bot() && m.MsgType == event.MsgImage && m.RelatesTo == nil && e.ID != after && !v.seen(e.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
	v.markSeen(evt.ID)
	png, err := v.alice.DownloadBytes(ctx, evt.Content.AsMessage().URL.ParseOrIgnore())
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("the QR image is not a PNG (err %v, %d bytes)", err, len(png))
	}
	return evt
}

// seen remembers events a test already consumed, so the same image is not matched twice.
func (v *variant) seen(evtID id.EventID) bool { return v.seenEvents[evtID] }
func (v *variant) markSeen(evtID id.EventID) {
	if v.seenEvents == nil {
		v.seenEvents = map[id.EventID]bool{}
	}
	v.seenEvents[evtID] = true
}

// message builds an incoming message event.
func message(chat, sender types.JID, msgID, pushName string, msg *waE2E.Message) *events.Message {
	return &events.Message{Info: types.MessageInfo{
		MessageSource: types.MessageSource{Chat: chat, Sender: sender, IsGroup: chat.Server == types.GroupServer},
		ID:            msgID, PushName: pushName, Timestamp: time.Now().Truncate(time.Second), Type: "text",
	}, RawMessage: msg, Message: msg}
}

func text(s string) *waE2E.Message { return &waE2E.Message{Conversation: proto.String(s)} }

// dispatch delivers an event and fails the test if the bridge does not take it.
func (v *variant) dispatch(conn *fakewa.Conn, evt any) {
	v.t.Helper()
	if err := conn.Dispatch(v.ctx(), evt); err != nil {
		v.t.Fatal(err)
	}
}

// waitIn waits for an event in a room.
func (v *variant) waitIn(room id.RoomID, what string, match func(*event.Event) bool) *event.Event {
	v.t.Helper()
	evt, err := v.alice.WaitEvent(v.ctx(), room, match)
	if err != nil {
		v.t.Fatalf("%s: %v", what, err)
	}
	return evt
}

// msgFrom matches a message of a type from sender whose body contains body.
func msgFrom(sender id.UserID, msgType event.MessageType, body string) func(*event.Event) bool {
	return func(e *event.Event) bool {
		if e.Type != event.EventMessage || e.Sender != sender {
			return false
		}
		m := e.Content.AsMessage()
		return m.MsgType == msgType && strings.Contains(m.Body, body) && m.RelatesTo.GetReplaceID() == ""
	}
}

// testIncomingMessages: every kind of WhatsApp message lands in the DM portal, created
// on the first one, from the contact's ghost.
func (v *variant) testIncomingMessages(t *testing.T, conn *fakewa.Conn) id.RoomID {
	ctx := v.ctx()
	bob := userJID(v.bobPhone)
	bobGhost := ghost(v.bobPhone)
	v.wa.SetAvatarURL(bob, v.pictures.URL+"/bob.png")
	v.dispatch(conn, message(bob, bob, "BOB1", "Bob", text("*hello* from _bob_")))
	dm, first, err := v.alice.WaitAnyEvent(ctx, func(room id.RoomID, e *event.Event) bool {
		return e.Sender == bobGhost && e.Type == event.EventMessage
	})
	if err != nil {
		t.Fatalf("first message did not create a portal: %v", err)
	}
	if m := first.Content.AsMessage(); m.FormattedBody != "<strong>hello</strong> from <em>bob</em>" {
		t.Errorf("formatting: got body %q, html %q", m.Body, m.FormattedBody)
	}
	// The user is in the portal (double puppet joined them) and the ghost is named.
	v.waitIn(dm, "user joined the DM portal", harness.Membership(v.alice.UserID, event.MembershipJoin))
	if name, err := v.alice.GetDisplayName(ctx, bobGhost); err != nil || name.DisplayName != "Bob" {
		t.Errorf("ghost display name = %+v, %v; want Bob", name, err)
	}
	firstAvatar := v.avatarOf(bobGhost)
	if data, err := v.alice.DownloadBytes(ctx, firstAvatar); err != nil || !bytes.Equal(data, pictureBytes("/bob.png")) {
		t.Errorf("ghost avatar %s is not the contact's picture (err %v)", firstAvatar, err)
	}
	// A new profile picture follows.
	v.wa.SetAvatarURL(bob, v.pictures.URL+"/bob-new.png")
	v.dispatch(conn, &events.Picture{JID: bob, Author: bob, Timestamp: time.Now(), PictureID: "2"})
	v.waitFor("ghost avatar change", func() bool {
		uri := v.avatarOf(bobGhost)
		data, err := v.alice.DownloadBytes(ctx, uri)
		return err == nil && bytes.Equal(data, pictureBytes("/bob-new.png"))
	})

	// Replies, reactions (replaced, then removed), edits and revokes.
	reply := &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("replying"),
		ContextInfo: &waE2E.ContextInfo{StanzaID: proto.String("BOB1"), Participant: proto.String(bob.String())}}}
	v.dispatch(conn, message(bob, bob, "BOB2", "Bob", reply))
	r := v.waitIn(dm, "reply", msgFrom(bobGhost, event.MsgText, "replying"))
	if got := r.Content.AsMessage().RelatesTo.GetReplyTo(); got != first.ID {
		t.Errorf("reply points to %s, want %s", got, first.ID)
	}
	react := func(msgID, emoji string) *waE2E.Message {
		return &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Text: proto.String(emoji),
			Key: &waCommon.MessageKey{RemoteJID: proto.String(bob.String()), ID: proto.String("BOB1")}}}
	}
	v.dispatch(conn, message(bob, bob, "BOBR1", "Bob", react("BOB1", "👍")))
	thumbs := v.waitIn(dm, "reaction", func(e *event.Event) bool {
		return e.Type == event.EventReaction && e.Sender == bobGhost && e.Content.AsReaction().RelatesTo.Key == "👍"
	})
	v.dispatch(conn, message(bob, bob, "BOBR2", "Bob", react("BOB1", "❤️")))
	v.waitIn(dm, "replacing reaction", func(e *event.Event) bool {
		return e.Type == event.EventReaction && e.Sender == bobGhost && e.Content.AsReaction().RelatesTo.Key == "❤️"
	})
	v.waitIn(dm, "replaced reaction redacted", redactionOf(thumbs.ID))
	edit := &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(),
		Key: &waCommon.MessageKey{ID: proto.String("BOB2")}, EditedMessage: text("replying, edited")}}
	v.dispatch(conn, message(bob, bob, "BOBE1", "Bob", edit))
	v.waitIn(dm, "edit", func(e *event.Event) bool {
		m := e.Content.AsMessage()
		return e.Sender == bobGhost && m.RelatesTo.GetReplaceID() == r.ID && m.NewContent != nil && m.NewContent.Body == "replying, edited"
	})
	revoke := &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum(),
		Key: &waCommon.MessageKey{ID: proto.String("BOB2")}}}
	v.dispatch(conn, message(bob, bob, "BOBX1", "Bob", revoke))
	v.waitIn(dm, "revoke", redactionOf(r.ID))

	// Media, each downloaded from WhatsApp and uploaded to Matrix.
	pngData := []byte("\x89PNG\r\n\x1a\nfake image bytes")
	v.wa.AddMedia("/m/img", pngData)
	v.wa.AddMedia("/m/voice", []byte("OggS fake voice"))
	v.wa.AddMedia("/m/doc", []byte("%PDF-1.4 fake"))
	v.wa.AddMedia("/m/video", []byte("fake mp4"))
	v.wa.AddMedia("/m/sticker", []byte("RIFF fake webp"))
	v.dispatch(conn, message(bob, bob, "BOBI", "Bob", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
		DirectPath: proto.String("/m/img"), Mimetype: proto.String("image/png"), Caption: proto.String("look at *this*"),
		Width: proto.Uint32(640), Height: proto.Uint32(480), FileLength: proto.Uint64(uint64(len(pngData)))}}))
	img := v.waitIn(dm, "image", msgFrom(bobGhost, event.MsgImage, "look at"))
	if data, err := v.alice.DownloadBytes(ctx, img.Content.AsMessage().URL.ParseOrIgnore()); err != nil || !bytes.Equal(data, pngData) {
		t.Errorf("image bytes differ (err %v)", err)
	}
	if info := img.Content.AsMessage().Info; info == nil || info.Width != 640 || info.MimeType != "image/png" {
		t.Errorf("image info = %+v", info)
	}
	v.dispatch(conn, message(bob, bob, "BOBV", "Bob", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{
		DirectPath: proto.String("/m/voice"), Mimetype: proto.String("audio/ogg; codecs=opus"), PTT: proto.Bool(true), Seconds: proto.Uint32(3)}}))
	voice := v.waitIn(dm, "voice note", msgFrom(bobGhost, event.MsgAudio, ""))
	if voice.Content.AsMessage().MSC3245Voice == nil {
		t.Errorf("voice note not marked as voice: %s", voice.Content.VeryRaw)
	}
	v.dispatch(conn, message(bob, bob, "BOBD", "Bob", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{
		DirectPath: proto.String("/m/doc"), Mimetype: proto.String("application/pdf"), FileName: proto.String("report.pdf")}}))
	v.waitIn(dm, "document", msgFrom(bobGhost, event.MsgFile, "report.pdf"))
	v.dispatch(conn, message(bob, bob, "BOBVID", "Bob", &waE2E.Message{VideoMessage: &waE2E.VideoMessage{
		DirectPath: proto.String("/m/video"), Mimetype: proto.String("video/mp4"), Caption: proto.String("a video")}}))
	v.waitIn(dm, "video", msgFrom(bobGhost, event.MsgVideo, "a video"))
	v.dispatch(conn, message(bob, bob, "BOBS", "Bob", &waE2E.Message{StickerMessage: &waE2E.StickerMessage{
		DirectPath: proto.String("/m/sticker"), Mimetype: proto.String("image/webp")}}))
	v.waitIn(dm, "sticker", func(e *event.Event) bool { return e.Type == event.EventSticker && e.Sender == bobGhost })
	v.dispatch(conn, message(bob, bob, "BOBMISS", "Bob", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
		DirectPath: proto.String("/m/gone"), Mimetype: proto.String("image/jpeg")}}))
	v.waitIn(dm, "failed download notice", msgFrom(bobGhost, event.MsgNotice, "could not be downloaded"))
	// A sender who declares a small file and sends one past the bridge's limit is
	// refused once the limit is reached, whatever the declaration said.
	v.wa.AddMedia("/m/liar", bytes.Repeat([]byte("x"), 2*testMaxMediaBytes))
	v.dispatch(conn, message(bob, bob, "BOBLIAR", "Bob", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
		DirectPath: proto.String("/m/liar"), Mimetype: proto.String("image/jpeg"), FileLength: proto.Uint64(1000)}}))
	v.waitIn(dm, "oversized file notice", msgFrom(bobGhost, event.MsgNotice, "larger than the bridge's limit"))
	// Received files wait in the media spool only until uploaded.
	v.waitSpoolEmpty()

	// Locations, contacts, polls and unknown kinds.
	v.dispatch(conn, message(bob, bob, "BOBL", "Bob", &waE2E.Message{LocationMessage: &waE2E.LocationMessage{
		DegreesLatitude: proto.Float64(48.8584), DegreesLongitude: proto.Float64(2.2945), Name: proto.String("Eiffel Tower")}}))
	loc := v.waitIn(dm, "location", msgFrom(bobGhost, event.MsgLocation, "Eiffel Tower"))
	if geo := loc.Content.AsMessage().GeoURI; geo != "geo:48.858400,2.294500" {
		t.Errorf("geo URI = %q", geo)
	}
	v.dispatch(conn, message(bob, bob, "BOBC", "Bob", &waE2E.Message{ContactMessage: &waE2E.ContactMessage{
		DisplayName: proto.String("Dan"), Vcard: proto.String("BEGIN:VCARD\nVERSION:3.0\nFN:Dan\nTEL:+" + v.danPhone + "\nEND:VCARD")}}))
	v.waitIn(dm, "contact card", msgFrom(bobGhost, event.MsgFile, "Contact: Dan"))
	v.dispatch(conn, message(bob, bob, "BOBP", "Bob", &waE2E.Message{PollCreationMessageV3: &waE2E.PollCreationMessage{
		Name: proto.String("Lunch?"), Options: []*waE2E.PollCreationMessage_Option{{OptionName: proto.String("Pizza")}, {OptionName: proto.String("Sushi")}}}}))
	v.waitIn(dm, "poll notice", msgFrom(bobGhost, event.MsgNotice, "Poll: Lunch?\n1. Pizza\n2. Sushi"))
	v.dispatch(conn, message(bob, bob, "BOBU", "Bob", &waE2E.Message{ListMessage: &waE2E.ListMessage{Title: proto.String("menu")}}))
	v.waitIn(dm, "unsupported notice", msgFrom(bobGhost, event.MsgNotice, "not supported"))

	// Typing and read receipts from the contact.
	v.dispatch(conn, &events.ChatPresence{MessageSource: types.MessageSource{Chat: bob, Sender: bob}, State: types.ChatPresenceComposing})
	if _, err := v.alice.WaitEvent(ctx, dm, func(e *event.Event) bool {
		return e.Type == event.EphemeralEventTyping && len(e.Content.AsTyping().UserIDs) == 1 && e.Content.AsTyping().UserIDs[0] == bobGhost
	}); err != nil {
		t.Fatalf("typing: %v", err)
	}
	return dm
}

// redactionOf matches the redaction of target.
func redactionOf(target id.EventID) func(*event.Event) bool {
	return func(e *event.Event) bool {
		if e.Type != event.EventRedaction {
			return false
		}
		return e.Redacts == target || e.Content.AsRedaction().Redacts == target
	}
}

// sent waits for the next message the bridge sends to WhatsApp after *cursor.
func (v *variant) sent(cursor *int, match func(*fakewa.Call) bool) *fakewa.Call {
	v.t.Helper()
	call, idx, err := v.wa.WaitCall(v.ctx(), *cursor, match)
	if err != nil {
		v.t.Fatal(err)
	}
	*cursor = idx + 1
	return call
}

// sendTo matches a sent message to a chat.
func sendTo(chat types.JID) func(*fakewa.Call) bool {
	return func(c *fakewa.Call) bool { return c.Op == fakewa.CallSend && c.To == chat }
}

// testOutgoingMessages: Matrix messages, replies, edits, reactions, redactions, media,
// typing and read receipts become the right whatsmeow calls and protobufs.
func (v *variant) testOutgoingMessages(t *testing.T, conn *fakewa.Conn, dm id.RoomID) {
	ctx := v.ctx()
	bob := userJID(v.bobPhone)
	cursor := v.wa.CallCount()
	content := format.RenderMarkdown("hi **Bob**, see `code`", true, false)
	resp, err := v.alice.SendMessageEvent(ctx, dm, event.EventMessage, &content)
	if err != nil {
		t.Fatal(err)
	}
	call := v.sent(&cursor, sendTo(bob))
	if got := textOf(call.Message); got != "hi *Bob*, see `code`" {
		t.Errorf("sent text = %q", got)
	}
	ownMsg := call.ID
	// Bob reads it on his phone.
	v.dispatch(conn, &events.Receipt{MessageSource: types.MessageSource{Chat: bob, Sender: bob},
		MessageIDs: []string{ownMsg}, Type: types.ReceiptTypeRead, Timestamp: time.Now()})
	if _, err = v.alice.WaitEvent(ctx, dm, func(e *event.Event) bool {
		if e.Type != event.EphemeralEventReceipt {
			return false
		}
		_, ok := (*e.Content.AsReceipt())[resp.EventID][event.ReceiptTypeRead][ghost(v.bobPhone)]
		return ok
	}); err != nil {
		t.Fatalf("contact's read receipt: %v", err)
	}

	// A reply with a mention pill.
	bobEvt := v.waitIn(dm, "bob's first message", msgFrom(ghost(v.bobPhone), event.MsgText, "hello"))
	reply := &event.MessageEventContent{MsgType: event.MsgText, Body: "Bob: yes",
		Format: event.FormatHTML, FormattedBody: `<a href="https://matrix.to/#/` + ghost(v.bobPhone).String() + `">Bob</a>: yes`,
		Mentions: &event.Mentions{UserIDs: []id.UserID{ghost(v.bobPhone)}}}
	reply.SetReply(bobEvt)
	if _, err = v.alice.SendMessageEvent(ctx, dm, event.EventMessage, reply); err != nil {
		t.Fatal(err)
	}
	call = v.sent(&cursor, sendTo(bob))
	ext := call.Message.GetExtendedTextMessage()
	if ext.GetText() != "@"+v.bobPhone+": yes" || ext.GetContextInfo().GetStanzaID() != "BOB1" ||
		len(ext.GetContextInfo().GetMentionedJID()) != 1 || ext.GetContextInfo().GetMentionedJID()[0] != bob.String() {
		t.Errorf("reply with mention sent as %v", call.Message)
	}

	// An edit, a reaction, its removal and a redaction.
	edit := &event.MessageEventContent{MsgType: event.MsgText, Body: "* hi Bob (edited)"}
	edit.SetEdit(resp.EventID)
	edit.NewContent = &event.MessageEventContent{MsgType: event.MsgText, Body: "hi Bob (edited)"}
	if _, err = v.alice.SendMessageEvent(ctx, dm, event.EventMessage, edit); err != nil {
		t.Fatal(err)
	}
	call = v.sent(&cursor, sendTo(bob))
	pm := call.Message.GetProtocolMessage()
	if pm == nil {
		pm = call.Message.GetEditedMessage().GetMessage().GetProtocolMessage()
	}
	if pm.GetType() != waE2E.ProtocolMessage_MESSAGE_EDIT || pm.GetKey().GetID() != ownMsg || textOf(pm.GetEditedMessage()) != "hi Bob (edited)" {
		t.Errorf("edit sent as %v", call.Message)
	}
	reaction, err := v.alice.SendReaction(ctx, dm, bobEvt.ID, "🎉")
	if err != nil {
		t.Fatal(err)
	}
	call = v.sent(&cursor, sendTo(bob))
	if rm := call.Message.GetReactionMessage(); rm.GetText() != "🎉" || rm.GetKey().GetID() != "BOB1" || rm.GetKey().GetFromMe() {
		t.Errorf("reaction sent as %v", call.Message)
	}
	v.redact(dm, reaction.EventID)
	call = v.sent(&cursor, sendTo(bob))
	if rm := call.Message.GetReactionMessage(); rm == nil || rm.GetText() != "" || rm.GetKey().GetID() != "BOB1" {
		t.Errorf("reaction removal sent as %v", call.Message)
	}
	v.redact(dm, resp.EventID)
	call = v.sent(&cursor, sendTo(bob))
	if pm := call.Message.GetProtocolMessage(); pm.GetType() != waE2E.ProtocolMessage_REVOKE || pm.GetKey().GetID() != ownMsg || !pm.GetKey().GetFromMe() {
		t.Errorf("revoke sent as %v", call.Message)
	}

	// An image, uploaded to WhatsApp.
	imgData := []byte("\x89PNG\r\n\x1a\nmatrix image")
	up, err := v.alice.UploadBytesWithName(ctx, imgData, "image/png", "cat.png")
	if err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.SendMessageEvent(ctx, dm, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgImage,
		Body: "my cat", FileName: "cat.png", URL: up.ContentURI.CUString(), Info: &event.FileInfo{MimeType: "image/png", Width: 10, Height: 20}}); err != nil {
		t.Fatal(err)
	}
	call = v.sent(&cursor, sendTo(bob))
	im := call.Message.GetImageMessage()
	if im.GetCaption() != "my cat" || im.GetMimetype() != "image/png" || im.GetWidth() != 10 || !bytes.Equal(v.wa.Media(im.GetDirectPath()), imgData) {
		t.Errorf("image sent as %v", call.Message)
	}
	// A file past WhatsApp's limit, its size not declared: read to the end, refused
	// with a notice, nothing sent (the next call to WhatsApp is the location below);
	// neither goes through memory whole, and both leave the spool.
	v.waitSpoolEmpty()
	big, err := v.alice.UploadBytesWithName(ctx, bytes.Repeat([]byte("y"), 2*testMaxMediaBytes), "application/octet-stream", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.SendMessageEvent(ctx, dm, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgFile,
		Body: "big.bin", URL: big.ContentURI.CUString()}); err != nil {
		t.Fatal(err)
	}
	v.waitIn(dm, "oversized file notice", noticeFrom(bot(), "not bridged", "WhatsApp limit"))
	v.waitSpoolEmpty()

	// A location.
	if _, err = v.alice.SendMessageEvent(ctx, dm, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgLocation,
		Body: "here", GeoURI: "geo:51.5,-0.12"}); err != nil {
		t.Fatal(err)
	}
	call = v.sent(&cursor, sendTo(bob))
	if l := call.Message.GetLocationMessage(); l.GetDegreesLatitude() != 51.5 || l.GetDegreesLongitude() != -0.12 {
		t.Errorf("location sent as %v", call.Message)
	}

	// Typing and read receipts (ephemeral events Dendrite does not push to appservices).
	v.push("typing-"+v.name, map[string]any{"ephemeral": []any{map[string]any{"type": "m.typing", "room_id": dm,
		"content": map[string]any{"user_ids": []id.UserID{v.alice.UserID}}}}})
	v.sent(&cursor, func(c *fakewa.Call) bool {
		return c.Op == fakewa.CallChatPresence && c.Chat == bob && c.State == string(types.ChatPresenceComposing)
	})
	last := v.waitIn(dm, "bob's unsupported message", msgFrom(ghost(v.bobPhone), event.MsgNotice, "not supported"))
	v.push("receipt-"+v.name, map[string]any{"ephemeral": []any{map[string]any{"type": "m.receipt", "room_id": dm,
		"content": map[string]any{last.ID.String(): map[string]any{"m.read": map[string]any{v.alice.UserID.String(): map[string]any{"ts": time.Now().UnixMilli()}}}}}}})
	v.sent(&cursor, func(c *fakewa.Call) bool {
		return c.Op == fakewa.CallMarkRead && c.Chat == bob && len(c.IDs) == 1 && c.IDs[0] == "BOBU"
	})
}

// textOf is the text of a text message.
func textOf(m *waE2E.Message) string {
	if m.Conversation != nil {
		return m.GetConversation()
	}
	return m.GetExtendedTextMessage().GetText()
}

func (v *variant) push(txnID string, txn map[string]any) {
	v.t.Helper()
	if err := harness.PushTransaction(v.ctx(), shared.port, shared.reg.ServerToken, txnID, txn); err != nil {
		v.t.Fatal(err)
	}
}

func (v *variant) redact(room id.RoomID, target id.EventID) {
	v.t.Helper()
	resp, err := v.alice.RedactEvent(v.ctx(), room, target)
	if err != nil {
		v.t.Fatal(err)
	}
	v.push("redact-"+resp.EventID.String(), map[string]any{"events": []any{harness.RedactionEvent(v.alice.UserID, room, resp.EventID, target)}})
}

// testOwnDevice: what the user sends from the phone shows as their own Matrix account
// (double puppet), and is not sent back to WhatsApp.
func (v *variant) testOwnDevice(t *testing.T, conn *fakewa.Conn, dm id.RoomID) {
	bob := userJID(v.bobPhone)
	cursor := v.wa.CallCount()
	own := message(bob, userJID(v.alicePhone), "ALICEPHONE1", "Alice", text("sent from my phone"))
	own.Info.IsFromMe = true
	v.dispatch(conn, own)
	ownEvt := v.waitIn(dm, "own-device message as the double puppet", msgFrom(v.alice.UserID, event.MsgText, "sent from my phone"))
	if _, err := v.alice.SendText(v.ctx(), dm, "after the phone"); err != nil {
		t.Fatal(err)
	}
	call := v.sent(&cursor, func(c *fakewa.Call) bool { return c.Op == fakewa.CallSend })
	if textOf(call.Message) != "after the phone" {
		t.Errorf("the next message sent to WhatsApp is %q: the phone's message was echoed", textOf(call.Message))
	}
	// Reading on the phone marks the portal read as the user.
	v.dispatch(conn, &events.Receipt{MessageSource: types.MessageSource{Chat: bob, Sender: userJID(v.alicePhone), IsFromMe: true},
		MessageIDs: []string{"ALICEPHONE1"}, Type: types.ReceiptTypeReadSelf, Timestamp: time.Now()})
	v.waitIn(dm, "read on the phone, read on Matrix", func(e *event.Event) bool {
		if e.Type != event.EphemeralEventReceipt {
			return false
		}
		_, ok := (*e.Content.AsReceipt())[ownEvt.ID][event.ReceiptTypeRead][v.alice.UserID]
		return ok
	})
}

// testGroup: a group message creates the group's portal with its name, topic, members
// and admins; changes to the group follow; mentions become pills.
func (v *variant) testGroup(t *testing.T, conn *fakewa.Conn) {
	ctx := v.ctx()
	group := types.NewJID("120363000000000"+v.name[:1], types.GroupServer)
	bob, carol := userJID(v.bobPhone), userJID(v.carolPhone)
	v.wa.SetGroup(&types.GroupInfo{JID: group, GroupName: types.GroupName{Name: "Team " + v.name},
		GroupTopic:   types.GroupTopic{Topic: "Our team"},
		Participants: []types.GroupParticipant{{JID: userJID(v.alicePhone)}, {JID: bob, IsAdmin: true}, {JID: carol}}})
	v.wa.SetAvatarURL(group, v.pictures.URL+"/group.png")
	if err := conn.StoreContact(ctx, carol, "Carol Contact", ""); err != nil {
		t.Fatal(err)
	}
	mention := &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("hey @" + v.alicePhone + " and @" + v.bobPhone),
		ContextInfo: &waE2E.ContextInfo{MentionedJID: []string{userJID(v.alicePhone).String(), bob.String()}}}}
	v.dispatch(conn, message(group, carol, "CAROL1", "carol", mention))
	room, evt, err := v.alice.WaitAnyEvent(ctx, func(room id.RoomID, e *event.Event) bool {
		return e.Sender == ghost(v.carolPhone) && e.Type == event.EventMessage
	})
	if err != nil {
		t.Fatal(err)
	}
	m := evt.Content.AsMessage()
	if !strings.Contains(m.FormattedBody, ghost(v.bobPhone).URI().MatrixToURL()) || !strings.Contains(m.FormattedBody, v.alice.UserID.URI().MatrixToURL()) ||
		m.Mentions == nil || len(m.Mentions.UserIDs) != 2 {
		t.Errorf("mentions: body %q html %q mentions %+v", m.Body, m.FormattedBody, m.Mentions)
	}
	v.waitIn(room, "group name", func(e *event.Event) bool {
		return e.Type == event.StateRoomName && e.Content.AsRoomName().Name == "Team "+v.name
	})
	v.waitIn(room, "group topic", func(e *event.Event) bool {
		return e.Type == event.StateTopic && e.Content.AsTopic().Topic == "Our team"
	})
	avatar := v.waitIn(room, "group picture", func(e *event.Event) bool { return e.Type == event.StateRoomAvatar })
	if data, err := v.alice.DownloadBytes(ctx, avatar.Content.AsRoomAvatar().URL.ParseOrIgnore()); err != nil || !bytes.Equal(data, pictureBytes("/group.png")) {
		t.Errorf("room avatar is not the group's picture (err %v)", err)
	}
	v.waitIn(room, "bob joined", harness.Membership(ghost(v.bobPhone), event.MembershipJoin))
	v.waitIn(room, "bob is a moderator", func(e *event.Event) bool {
		return e.Type == event.StatePowerLevels && e.Content.AsPowerLevels().Users[ghost(v.bobPhone)] == 50
	})
	if name, err := v.alice.GetDisplayName(ctx, ghost(v.carolPhone)); err != nil || name.DisplayName != "Carol Contact" {
		t.Errorf("carol's ghost is named %+v, %v; want her address-book name", name, err)
	}

	// Changes: a rename, dan added, carol promoted, bob leaving.
	dan := userJID(v.danPhone)
	v.wa.SetGroup(&types.GroupInfo{JID: group, GroupName: types.GroupName{Name: "Renamed " + v.name},
		GroupTopic:   types.GroupTopic{Topic: "Our team"},
		Participants: []types.GroupParticipant{{JID: userJID(v.alicePhone)}, {JID: carol, IsAdmin: true}, {JID: dan}}})
	v.dispatch(conn, &events.GroupInfo{JID: group, Sender: &carol, Timestamp: time.Now(),
		Name: &types.GroupName{Name: "Renamed " + v.name}, Join: []types.JID{dan}, Promote: []types.JID{carol}, Leave: []types.JID{bob}})
	v.waitIn(room, "rename", func(e *event.Event) bool {
		return e.Type == event.StateRoomName && e.Content.AsRoomName().Name == "Renamed "+v.name
	})
	v.waitIn(room, "dan joined", harness.Membership(ghost(v.danPhone), event.MembershipJoin))
	v.waitIn(room, "carol promoted", func(e *event.Event) bool {
		return e.Type == event.StatePowerLevels && e.Content.AsPowerLevels().Users[ghost(v.carolPhone)] == 50
	})
	v.waitIn(room, "bob removed", func(e *event.Event) bool {
		ms := e.Content.AsMember().Membership
		return e.Type == event.StateMember && e.GetStateKey() == ghost(v.bobPhone).String() && (ms == event.MembershipLeave || ms == event.MembershipBan)
	})

	// Only a message's sender edits it, and only its sender or an admin deletes it.
	v.dispatch(conn, message(group, dan, "DAN1", "Dan", text("dan's words")))
	danMsg := v.waitIn(room, "dan's message", msgFrom(ghost(v.danPhone), event.MsgText, "dan's words"))
	forgedEdit := &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(),
		Key: &waCommon.MessageKey{ID: proto.String("CAROL1")}, EditedMessage: text("words carol never wrote")}}
	v.dispatch(conn, message(group, dan, "DANFORGE1", "Dan", forgedEdit))
	forgedRevoke := &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum(),
		Key: &waCommon.MessageKey{ID: proto.String("CAROL1")}}}
	v.dispatch(conn, message(group, dan, "DANFORGE2", "Dan", forgedRevoke))
	v.dispatch(conn, message(group, dan, "DAN2", "Dan", text("after the forgeries")))
	// Events of one chat are handled in order: once this arrives, the forgeries were handled.
	v.waitIn(room, "message after the forgeries", msgFrom(ghost(v.danPhone), event.MsgText, "after the forgeries"))
	for _, e := range v.alice.Events(room) {
		if e.Type == event.EventRedaction && (e.Redacts == evt.ID || e.Content.AsRedaction().Redacts == evt.ID) ||
			e.Type == event.EventMessage && e.Content.AsMessage().RelatesTo.GetReplaceID() == evt.ID {
			t.Errorf("a forged edit or deletion of carol's message was bridged: %s", harness.DescribeEvent(e))
		}
	}
	// carol is an admin now: she may delete dan's message.
	adminRevoke := &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum(),
		Key: &waCommon.MessageKey{ID: proto.String("DAN1")}}}
	v.dispatch(conn, message(group, carol, "CAROLREVOKE", "carol", adminRevoke))
	v.waitIn(room, "admin deletion", redactionOf(danMsg.ID))

	// A group's disappearing timer, and a message that cannot be decrypted.
	v.dispatch(conn, &events.GroupInfo{JID: group, Sender: &carol, Timestamp: time.Now(),
		Ephemeral: &types.GroupEphemeral{IsEphemeral: true, DisappearingTimer: 7 * 24 * 3600}})
	v.waitIn(room, "group timer notice", msgFrom(ghost(v.carolPhone), event.MsgNotice, "after 7 days"))
	v.dispatch(conn, &events.UndecryptableMessage{Info: types.MessageInfo{
		MessageSource: types.MessageSource{Chat: group, Sender: dan, IsGroup: true}, ID: "DANBROKEN", Timestamp: time.Now()}})
	v.waitIn(room, "undecryptable notice", msgFrom(ghost(v.danPhone), event.MsgNotice, "could not be decrypted"))
}

// testIdentity: a contact writing from their hidden ID (LID) is the same ghost and the
// same DM as under their phone number.
func (v *variant) testIdentity(t *testing.T, conn *fakewa.Conn, dm id.RoomID) {
	bob := userJID(v.bobPhone)
	lid := types.NewJID("98765432"+v.bobPhone[len(v.bobPhone)-3:], types.HiddenUserServer)
	msg := message(lid, lid, "BOBLID1", "Bob", text("from my LID"))
	msg.Info.SenderAlt = bob
	msg.Info.AddressingMode = types.AddressingModeLID
	v.dispatch(conn, msg)
	v.waitIn(dm, "LID message in the phone-number DM", msgFrom(ghost(v.bobPhone), event.MsgText, "from my LID"))
	// Later messages on the LID chat, without the alternate address, still land there.
	v.dispatch(conn, message(lid, lid, "BOBLID2", "Bob", text("LID again")))
	v.waitIn(dm, "second LID message", msgFrom(ghost(v.bobPhone), event.MsgText, "LID again"))
}

// testPM: `pm whatsapp <phone>` opens a DM portal with a contact; a number that is not
// on WhatsApp is refused with a clear message.
func (v *variant) testPM(t *testing.T, conn *fakewa.Conn) {
	ctx := v.ctx()
	dan := userJID(v.danPhone)
	v.wa.AddAccount(dan)
	v.command(v.alice, v.mgmt, "pm whatsapp +"+v.prefix()+"9999999", "is not on WhatsApp")
	reply := v.command(v.alice, v.mgmt, "pm whatsapp +"+v.danPhone, "chat with")
	body := reply.Content.AsMessage().Body
	room := id.RoomID(body[strings.LastIndex(body, "/")+1:])
	v.waitIn(room, "dan's ghost in the DM", harness.Membership(ghost(v.danPhone), event.MembershipJoin))
	v.waitIn(room, "alice in the DM", harness.Membership(v.alice.UserID, event.MembershipJoin))
	var err error
	cursor := v.wa.CallCount()
	if _, err = v.alice.SendText(ctx, room, "hello Dan"); err != nil {
		t.Fatal(err)
	}
	if call := v.sent(&cursor, sendTo(dan)); textOf(call.Message) != "hello Dan" {
		t.Errorf("sent %v to Dan", call.Message)
	}

	// Inviting a contact's ghost to a new direct room starts a chat with them too.
	erinPhone := v.prefix() + "0000006"
	resp, err := v.alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{ghost(erinPhone)}})
	if err != nil {
		t.Fatal(err)
	}
	v.waitIn(resp.RoomID, "erin's ghost joined", harness.Membership(ghost(erinPhone), event.MembershipJoin))
	if _, err = v.alice.SendText(ctx, resp.RoomID, "hello Erin"); err != nil {
		t.Fatal(err)
	}
	if call := v.sent(&cursor, sendTo(userJID(erinPhone))); textOf(call.Message) != "hello Erin" {
		t.Errorf("sent %v to Erin", call.Message)
	}
}

// testSecondUser: another Matrix user cannot take over a linked account, and has a
// login and portals of their own.
func (v *variant) testSecondUser(t *testing.T) {
	ctx := v.ctx()
	mgmt := v.managementRoom(v.mallory)
	login := func(device types.JID) *fakewa.Conn {
		t.Helper()
		before := map[*fakewa.Conn]bool{}
		if _, err := v.mallory.SendText(ctx, mgmt, "login whatsapp"); err != nil {
			t.Fatal(err)
		}
		conn, err := v.wa.WaitConn(ctx, func(c *fakewa.Conn) bool { return fakewa.Unpaired(c) && c.QR && !v.usedConns[c] && !before[c] })
		if err != nil {
			t.Fatal(err)
		}
		v.markUsed(conn)
		if err = conn.SendQR(ctx, "2@mallory", time.Minute); err != nil {
			t.Fatal(err)
		}
		if err = conn.PairSuccess(ctx, device, "Mallory"); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	cursor := v.wa.CallCount()
	stolen := login(types.NewADJID(v.alicePhone, 0, 20))
	if _, err := v.mallory.WaitEvent(ctx, mgmt, noticeFrom(bot(), "already linked", "another Matrix user")); err != nil {
		t.Fatal(err)
	}
	v.sent(&cursor, func(c *fakewa.Call) bool { return c.Op == fakewa.CallLogout && c.Conn == stolen })

	malloryPhone := v.prefix() + "0000005"
	conn := login(types.NewADJID(malloryPhone, 0, 3))
	if _, err := v.mallory.WaitEvent(ctx, mgmt, noticeFrom(bot(), "Logged in to WhatsApp as +"+malloryPhone)); err != nil {
		t.Fatal(err)
	}
	bob := userJID(v.bobPhone)
	v.dispatch(conn, message(bob, bob, "BOBTOMAL", "Bob", text("hi Mallory")))
	room, _, err := v.mallory.WaitAnyEvent(ctx, func(_ id.RoomID, e *event.Event) bool {
		return e.Sender == ghost(v.bobPhone) && e.Type == event.EventMessage && e.Content.AsMessage().Body == "hi Mallory"
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.alice.Events(room)) != 0 {
		t.Errorf("alice sees mallory's DM portal %s", room)
	}
}

func (v *variant) markUsed(c *fakewa.Conn) {
	if v.usedConns == nil {
		v.usedConns = map[*fakewa.Conn]bool{}
	}
	v.usedConns[c] = true
}

// avatarOf is a user's avatar as the profile API gives it.
func (v *variant) avatarOf(user id.UserID) id.ContentURI {
	v.t.Helper()
	uri, err := v.alice.GetAvatarURL(v.ctx(), user)
	if err != nil {
		v.t.Fatalf("avatar of %s: %v", user, err)
	}
	return uri
}

// waitFor polls a condition the homeserver only exposes by request (a profile).
func (v *variant) waitFor(what string, cond func() bool) {
	v.t.Helper()
	ctx := v.ctx()
	for !cond() {
		select {
		case <-ctx.Done():
			v.t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// testHistorySync: the history the phone sends after login is bridged into new portals,
// the configured number of messages per chat, in order, with their original times.
func (v *variant) testHistorySync(t *testing.T, conn *fakewa.Conn) {
	ctx := v.ctx()
	friend := userJID(v.prefix() + "0000009")
	base := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	var msgs []*waHistorySync.HistorySyncMsg
	for i := 5; i >= 1; i-- { // newest first, as WhatsApp sends them
		msgs = append(msgs, &waHistorySync.HistorySyncMsg{Message: &waWeb.WebMessageInfo{
			Key:              &waCommon.MessageKey{RemoteJID: proto.String(friend.String()), FromMe: proto.Bool(i == 4), ID: proto.String("HIST" + string(rune('0'+i)))},
			Message:          text("history " + string(rune('0'+i))),
			MessageTimestamp: proto.Uint64(uint64(base.Add(time.Duration(i) * time.Minute).Unix())),
			PushName:         proto.String("Friend"),
		}})
	}
	v.dispatch(conn, &events.HistorySync{Data: &waHistorySync.HistorySync{SyncType: waHistorySync.HistorySync_INITIAL_BOOTSTRAP.Enum(),
		Conversations: []*waHistorySync.Conversation{{ID: proto.String(friend.String()), Messages: msgs}}}})
	room, _, err := v.alice.WaitAnyEvent(ctx, func(room id.RoomID, e *event.Event) bool {
		return e.Type == event.EventMessage && e.Content.AsMessage().Body == "history 5"
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range v.alice.Events(room) {
		if e.Type != event.EventMessage {
			continue
		}
		body := e.Content.AsMessage().Body
		got = append(got, body)
		var n int
		if _, err := fmt.Sscanf(body, "history %d", &n); err == nil {
			if want := base.Add(time.Duration(n) * time.Minute).UnixMilli(); e.Timestamp != want {
				t.Errorf("%q has timestamp %d, want the original %d", body, e.Timestamp, want)
			}
			if n == 4 && e.Sender != v.alice.UserID {
				t.Errorf("the user's own history message is from %s, want the double puppet", e.Sender)
			}
		}
	}
	if strings.Join(got, "|") != "history 3|history 4|history 5" {
		t.Errorf("backfilled %q, want the last 3 in order", got)
	}
}

func (v *variant) prefix() string { return v.alicePhone[:3] }

// testDisappearing: a disappearing message is removed from Matrix when its time is up,
// and Matrix messages into a chat with a timer carry it.
func (v *variant) testDisappearing(t *testing.T, conn *fakewa.Conn, dm id.RoomID) {
	bob := userJID(v.bobPhone)
	setting := &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_EPHEMERAL_SETTING.Enum(),
		EphemeralExpiration: proto.Uint32(86400)}}
	v.dispatch(conn, message(bob, bob, "BOBTIMER", "Bob", setting))
	v.waitIn(dm, "timer notice", msgFrom(ghost(v.bobPhone), event.MsgNotice, "disappear after 1 day"))
	cursor := v.wa.CallCount()
	if _, err := v.alice.SendText(v.ctx(), dm, "this will vanish"); err != nil {
		t.Fatal(err)
	}
	call := v.sent(&cursor, sendTo(bob))
	if exp := call.Message.GetExtendedTextMessage().GetContextInfo().GetExpiration(); exp != 86400 {
		t.Errorf("message into a disappearing chat has expiration %d, want 86400", exp)
	}
	short := &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("gone in a second"),
		ContextInfo: &waE2E.ContextInfo{Expiration: proto.Uint32(1)}}}
	v.dispatch(conn, message(bob, bob, "BOBSHORT", "Bob", short))
	evt := v.waitIn(dm, "short-lived message", msgFrom(ghost(v.bobPhone), event.MsgText, "gone in a second"))
	v.waitIn(dm, "disappeared message redacted", redactionOf(evt.ID))
}

// testRemoteLogout: the phone unlinking the bridge reaches the user as a notice.
func (v *variant) testRemoteLogout(t *testing.T, conn *fakewa.Conn) {
	v.dispatch(conn, &events.LoggedOut{})
	if _, err := v.alice.WaitEvent(v.ctx(), v.mgmt, noticeFrom(bot(), "unlinked", "login whatsapp")); err != nil {
		t.Fatal(err)
	}
	v.command(v.alice, v.mgmt, "logins", "logged out")
}

// testPairingCodeLogin: `login whatsapp <phone>` shows a pairing code; entering it on
// the phone logs in again, replacing the old link.
func (v *variant) testPairingCodeLogin(t *testing.T) *fakewa.Conn {
	ctx := v.ctx()
	v.command(v.alice, v.mgmt, "login whatsapp 0612", "international form")
	if _, err := v.alice.SendText(ctx, v.mgmt, "login whatsapp +"+v.alicePhone); err != nil {
		t.Fatal(err)
	}
	if _, err := v.alice.WaitEvent(ctx, v.mgmt, func(e *event.Event) bool {
		return e.Sender == bot() && strings.Contains(e.Content.AsMessage().Body, "FAKE-CODE")
	}); err != nil {
		t.Fatal(err)
	}
	call, _, err := v.wa.WaitCall(ctx, 0, fakewa.Op(fakewa.CallPairPhone))
	if err != nil {
		t.Fatal(err)
	}
	if err = call.Conn.PairSuccess(ctx, types.NewADJID(v.alicePhone, 0, 8), "Alice"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.WaitEvent(ctx, v.mgmt, noticeFrom(bot(), "Logged in to WhatsApp as +"+v.alicePhone, "replaces")); err != nil {
		t.Fatal(err)
	}
	v.command(v.alice, v.mgmt, "logins", "+"+v.alicePhone, "connected")
	return call.Conn
}

// testRestart: after a restart the session comes back from whatsmeow's store on the
// bridge's database, and messages flow again.
func (v *variant) testRestart(t *testing.T, conn *fakewa.Conn) *fakewa.Conn {
	ctx := v.ctx()
	v.bridge.Stop()
	v.start()
	next, err := v.wa.WaitConn(ctx, func(c *fakewa.Conn) bool { return c != conn && fakewa.DeviceOf(v.alicePhone)(c) })
	if err != nil {
		t.Fatalf("the session did not reconnect from the stored device: %v", err)
	}
	if next.Device != types.NewADJID(v.alicePhone, 0, 8).String() {
		t.Errorf("reconnected as %s, want the newest device", next.Device)
	}
	bob := userJID(v.bobPhone)
	v.dispatch(next, message(bob, bob, "BOBAFTER", "Bob", text("after the restart")))
	if _, _, err = v.alice.WaitAnyEvent(ctx, func(_ id.RoomID, e *event.Event) bool {
		return e.Sender == ghost(v.bobPhone) && e.Type == event.EventMessage && e.Content.AsMessage().Body == "after the restart"
	}); err != nil {
		t.Fatal(err)
	}
	return next
}

// testReconnect: a dropped connection is reported, whatsmeow reconnects by itself, and
// messages flow again.
func (v *variant) testReconnect(t *testing.T, conn *fakewa.Conn) *fakewa.Conn {
	ctx := v.ctx()
	conn.Hangup()
	next, err := v.wa.WaitConn(ctx, func(c *fakewa.Conn) bool { return c != conn && fakewa.DeviceOf(v.alicePhone)(c) })
	if err != nil {
		t.Fatalf("no reconnection after a drop: %v", err)
	}
	v.command(v.alice, v.mgmt, "logins", "+"+v.alicePhone, "connected")
	bob := userJID(v.bobPhone)
	v.dispatch(next, message(bob, bob, "BOBRECONN", "Bob", text("after the drop")))
	if _, _, err = v.alice.WaitAnyEvent(ctx, func(_ id.RoomID, e *event.Event) bool {
		return e.Sender == ghost(v.bobPhone) && e.Type == event.EventMessage && e.Content.AsMessage().Body == "after the drop"
	}); err != nil {
		t.Fatal(err)
	}
	return next
}

// testClientOutdated: WhatsApp refusing an outdated client is explained to the user,
// and the bridge admins are told what to do.
func (v *variant) testClientOutdated(t *testing.T, conn *fakewa.Conn) {
	v.dispatch(conn, &events.ClientOutdated{})
	if _, err := v.alice.WaitEvent(v.ctx(), v.mgmt, noticeFrom(bot(), "outdated", "405", "update")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.mallory.WaitAnyEvent(v.ctx(), func(_ id.RoomID, e *event.Event) bool {
		return noticeFrom(bot(), "WhatsApp refuses this version", "Update Passerelle")(e)
	}); err != nil {
		t.Fatalf("the admin was not told: %v", err)
	}
}

// testLogout: `logout whatsapp` unlinks the device on WhatsApp and forgets the login.
func (v *variant) testLogout(t *testing.T, conn *fakewa.Conn) {
	cursor := 0
	v.command(v.alice, v.mgmt, "logout whatsapp", "Logged out")
	v.sent(&cursor, func(c *fakewa.Call) bool { return c.Op == fakewa.CallLogout && c.Conn == conn })
	v.command(v.alice, v.mgmt, "logins", "no logins")
}
