package relaybot

import (
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/tests/harness"
)

// TestEncryptedRelayRoom: with the product's default, the relay room an outside
// contact's message opens is encrypted; a team member on a real E2EE client
// (matrix-js-sdk's Rust crypto) reads the contact encrypted and answers through the
// relay account; the homeserver holds no clear message from the bridge there.
func TestEncryptedRelayRoom(t *testing.T) {
	v := newVariantWith(t, "sqlite", "en", map[string]any{"encryption": map[string]any{"default": true}})
	ctx := testCtx(t)
	alice, err := harness.StartE2EEClient(ctx, shared.st.HS, v.alice)
	must(t, err)
	t.Cleanup(alice.Close)
	nick := "support" + v.name
	lobby := joinInvite(t, v.alice, nil)
	v.ircLogin(v.support, nick)
	guest := v.newIRC("guest" + v.name)
	must(t, guest.Privmsg(nick, "hello, anyone there? (encrypted)"))
	room := joinInvite(t, v.alice, map[id.RoomID]bool{lobby: true})
	encrypted, err := alice.WaitRoom(ctx, room)
	must(t, err)
	if !encrypted {
		t.Fatal("the relay room is not encrypted")
	}
	guestGhost := id.NewUserID("irc_relaynet.guest"+v.name, harness.DefaultDomain)
	m, err := alice.WaitMessage(ctx, room, harness.E2EEText(guestGhost, "hello, anyone there? (encrypted)"))
	must(t, err)
	if !m.Encrypted {
		t.Fatal("the contact's message reached the encrypted relay room in clear text")
	}
	_, err = alice.SendText(ctx, room, "hi, Alice here, encrypted")
	must(t, err)
	_, err = guest.Wait(ctx, harness.PrivmsgFrom(nick, "guest"+v.name, "Alice: hi, Alice here, encrypted"))
	must(t, err)

	resp, err := v.alice.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 200)
	must(t, err)
	for _, e := range resp.Chunk {
		if e.Type == event.EventMessage {
			t.Fatalf("%s sent a clear message into the encrypted relay room", e.Sender)
		}
	}
}
