package relaybot

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/bridge/database"
)

// TestStore runs the relay records on a real SQLite database (the end-to-end tests
// cover PostgreSQL).
func TestStore(t *testing.T) {
	ctx := t.Context()
	db, err := database.Open(ctx, "sqlite", filepath.Join(t.TempDir(), "relay.db"), 0, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s, err := newStore(ctx, db.Database)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = newStore(ctx, db.Database); err != nil {
		t.Fatalf("opening the store twice: %v", err)
	}
	chat := bridge.PortalKey{Connector: "irc", ChatID: "net/guest", Receiver: "net/@support:x"}
	conv := &conversation{RoomID: "!a:x", Account: "support", Chat: chat, Contact: "guest",
		Trigger: bridge.TriggerIncoming, LoginOwner: "@support:x"}
	if err = s.openConversation(ctx, conv); err != nil {
		t.Fatal(err)
	}
	// Until its set-up finishes, the conversation is resumed at start.
	if un, err := s.unready(ctx); err != nil || len(un) != 1 || un[0].Trigger != bridge.TriggerIncoming || un[0].LoginOwner != "@support:x" {
		t.Fatalf("unready = %+v, %v", un, err)
	}
	if err = s.markReady(ctx, "!a:x"); err != nil {
		t.Fatal(err)
	}
	if un, _ := s.unready(ctx); len(un) != 0 {
		t.Errorf("a finished set-up is still unready: %+v", un)
	}
	for _, u := range []id.UserID{"@bob:x", "@alice:x", "@bob:x"} {
		if err = s.addAssignee(ctx, "!a:x", u); err != nil {
			t.Fatal(err)
		}
	}
	open, err := s.open(ctx, "support")
	if err != nil || len(open) != 1 || len(open[0].Assignees) != 2 || open[0].Assignees[0] != "@alice:x" {
		t.Fatalf("open = %+v, %v", open, err)
	}
	if removed, _ := s.removeAssignee(ctx, "!a:x", "@carol:x"); removed {
		t.Error("removing someone who was not assigned reported success")
	}
	// The greeting goes once per contact.
	if first, _ := s.markGreeted(ctx, "support", chat); !first {
		t.Error("first greeting not recorded as first")
	}
	if first, _ := s.markGreeted(ctx, "support", chat); first {
		t.Error("second greeting recorded as first")
	}
	// Closed with retention: kept (and the contact stays greeted) until the sweep.
	if err = s.close(ctx, "!a:x", time.Hour); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.conversation(ctx, "!a:x"); c != nil {
		t.Error("a closed conversation is still open")
	}
	if err = s.forgetClosed(ctx, "support", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.markGreeted(ctx, "support", chat); first {
		t.Error("the greeting was forgotten before the retention passed")
	}
	if err = s.forgetClosed(ctx, "support", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.markGreeted(ctx, "support", chat); !first {
		t.Error("the greeting was kept after the conversation was forgotten")
	}
	// Closed without retention: nothing kept.
	conv.RoomID = "!b:x"
	if err = s.openConversation(ctx, conv); err != nil {
		t.Fatal(err)
	}
	if err = s.close(ctx, "!b:x", 0); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.markGreeted(ctx, "support", chat); !first {
		t.Error("closing without retention kept the greeting record")
	}
	// Lobbies the bridge made are remembered.
	if err = s.setLobby(ctx, "support", "!lobby:x"); err != nil {
		t.Fatal(err)
	}
	if room, err := s.lobby(ctx, "support"); err != nil || room != "!lobby:x" {
		t.Errorf("lobby = %s, %v", room, err)
	}
}
