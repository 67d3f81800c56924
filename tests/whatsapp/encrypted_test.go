package whatsapp

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/whatsapp/fakewa"
	"github.com/passerelle/passerelle/tests/harness"
)

// TestEncrypted: with the product's defaults, a user logs in to WhatsApp from an
// encrypted DM with the bot, as Element opens it, on a real E2EE client
// (matrix-js-sdk's Rust crypto): the QR code comes as an encrypted image; her DM portal
// is encrypted; a contact's text and picture arrive encrypted; her answer reaches
// WhatsApp; what she sends from her phone shows as her own account (double puppet),
// encrypted, and does not come back to WhatsApp.
func TestEncrypted(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			v := newVariantWith(t, "enc", db, 0, variantOptions{bridgeExtra: map[string]any{"encryption": map[string]any{"default": true}}})
			ctx := v.ctx()
			alice, err := harness.StartE2EEClient(ctx, shared.hs, v.alice)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(alice.Close)
			seen := map[id.EventID]bool{}
			// waitNew waits for a message not seen before and checks it came encrypted.
			waitNew := func(room id.RoomID, what string, match func(harness.E2EEMessage) bool) harness.E2EEMessage {
				t.Helper()
				m, err := alice.WaitMessage(ctx, room, func(m harness.E2EEMessage) bool { return !seen[m.EventID] && match(m) })
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if !m.Encrypted {
					t.Fatalf("%s arrived in clear text in an encrypted room", what)
				}
				seen[m.EventID] = true
				return m
			}
			fromBot := func(part string) func(harness.E2EEMessage) bool {
				return func(m harness.E2EEMessage) bool { return m.Sender == bot() && strings.Contains(m.Body, part) }
			}

			mgmt, err := alice.CreateEncryptedRoom(ctx, []id.UserID{bot()}, true)
			if err != nil {
				t.Fatal(err)
			}
			waitNew(mgmt, "the greeting", fromBot("management room"))
			if _, err = alice.SendText(ctx, mgmt, "login whatsapp"); err != nil {
				t.Fatal(err)
			}
			conn, err := v.wa.WaitConn(ctx, fakewa.Unpaired)
			if err != nil {
				t.Fatal(err)
			}
			if err = conn.SendQR(ctx, "2@encrypted-code", time.Minute); err != nil {
				t.Fatal(err)
			}
			qr := waitNew(mgmt, "the QR code", func(m harness.E2EEMessage) bool { return m.Sender == bot() && m.MsgType == event.MsgImage })
			if png := openAttachment(t, v, qr); !bytes.HasPrefix(png, []byte("\x89PNG")) {
				t.Fatal("the encrypted QR image does not open to a PNG")
			}
			if err = conn.PairSuccess(ctx, types.NewADJID(v.alicePhone, 0, 7), "Alice"); err != nil {
				t.Fatal(err)
			}
			waitNew(mgmt, "the login", fromBot("Logged in to WhatsApp"))

			// A contact writes: the DM portal is created encrypted.
			bob := userJID(v.bobPhone)
			bobGhost := ghost(v.bobPhone)
			v.dispatch(conn, message(bob, bob, "ENC1", "Bob", text("hello, encrypted")))
			dm, _, err := v.alice.WaitAnyEvent(ctx, func(_ id.RoomID, e *event.Event) bool { return e.Sender == bobGhost && e.Type == event.EventEncrypted })
			if err != nil {
				t.Fatalf("the contact's message did not reach an encrypted portal: %v", err)
			}
			waitNew(dm, "the contact's text", harness.E2EEText(bobGhost, "hello, encrypted"))
			picture := []byte("\x89PNG\r\n\x1a\na private picture")
			v.wa.AddMedia("/m/enc", picture)
			v.dispatch(conn, message(bob, bob, "ENC2", "Bob", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
				DirectPath: proto.String("/m/enc"), Mimetype: proto.String("image/png"), FileLength: proto.Uint64(uint64(len(picture)))}}))
			img := waitNew(dm, "the contact's picture", func(m harness.E2EEMessage) bool { return m.Sender == bobGhost && m.MsgType == event.MsgImage })
			if got := openAttachment(t, v, img); !bytes.Equal(got, picture) {
				t.Fatal("the picture does not open to what the contact sent")
			}

			// Her answer from Matrix reaches WhatsApp.
			cursor := v.wa.CallCount()
			if _, err = alice.SendText(ctx, dm, "answer, encrypted"); err != nil {
				t.Fatal(err)
			}
			if call := v.sent(&cursor, sendTo(bob)); textOf(call.Message) != "answer, encrypted" {
				t.Fatalf("sent to WhatsApp: %q", textOf(call.Message))
			}
			// From her phone: her own account says it, encrypted, and it is not echoed.
			own := message(bob, userJID(v.alicePhone), "ENCPHONE1", "Alice", text("from my phone, encrypted"))
			own.Info.IsFromMe = true
			v.dispatch(conn, own)
			waitNew(dm, "the double-puppeted message", harness.E2EEText(v.alice.UserID, "from my phone, encrypted"))
			if _, err = alice.SendText(ctx, dm, "after the phone, encrypted"); err != nil {
				t.Fatal(err)
			}
			if call := v.sent(&cursor, func(c *fakewa.Call) bool { return c.Op == fakewa.CallSend }); textOf(call.Message) != "after the phone, encrypted" {
				t.Fatalf("the next message sent to WhatsApp is %q: the phone's message was echoed", textOf(call.Message))
			}

			// The homeserver holds only ciphertext in both rooms.
			for _, room := range []id.RoomID{mgmt, dm} {
				resp, err := v.alice.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 200)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range resp.Chunk {
					if e.Type == event.EventMessage || e.Type == event.EventSticker {
						t.Fatalf("%s sent a clear %s into an encrypted room", e.Sender, e.Type.Type)
					}
				}
			}
		})
	}
}

// openAttachment downloads an encrypted attachment and decrypts it with the key its
// (decrypted) event carries; a file sent unencrypted fails the test.
func openAttachment(t *testing.T, v *variant, m harness.E2EEMessage) []byte {
	t.Helper()
	var content event.MessageEventContent
	if err := json.Unmarshal(m.Content, &content); err != nil {
		t.Fatal(err)
	}
	if content.File == nil || content.URL != "" {
		t.Fatalf("a file reached the encrypted room unencrypted: %s", m.Content)
	}
	data, err := v.alice.DownloadBytes(v.ctx(), content.File.URL.ParseOrIgnore())
	if err != nil {
		t.Fatal(err)
	}
	if err = content.File.DecryptInPlace(data); err != nil {
		t.Fatalf("the attachment does not open with its key: %v", err)
	}
	return data
}
