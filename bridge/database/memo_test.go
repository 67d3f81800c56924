package database_test

import (
	"context"
	"errors"
	"testing"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

// TestRememberedLookups: the lookups the hot path remembers (a room's link, a chat's
// rooms, a management room's owner, a user's logins) follow every write, on both
// databases; what a caller changes in an answer changes nothing remembered; and what
// was read inside a transaction that rolled back is not remembered.
func TestRememberedLookups(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		const roomID = "!memo:example.org"
		if r, err := db.GetRoom(ctx, roomID); err != nil || r != nil {
			t.Fatalf("unlinked room: %+v, %v", r, err)
		}
		if rs, err := db.RoomsForChat(ctx, "irc", "#memo", ""); err != nil || len(rs) != 0 {
			t.Fatalf("unlinked chat: %v, %v", rs, err)
		}
		if err := db.UpsertPortal(ctx, &database.PortalRow{Connector: "irc", ChatID: "#memo"}); err != nil {
			t.Fatal(err)
		}
		room := &database.RoomRow{RoomID: roomID, Connector: "irc", ChatID: "#memo", Kind: database.RoomPlumbed, CreatedBy: "@ann:example.org"}
		if err := db.InsertRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		got, err := db.GetRoom(ctx, roomID)
		if err != nil || got == nil || got.ChatID != "#memo" {
			t.Fatalf("after linking: %+v, %v", got, err)
		}
		got.ChatID = "#changed-by-a-caller"
		if rs, err := db.RoomsForChat(ctx, "irc", "#memo", ""); err != nil || len(rs) != 1 || rs[0].RoomID != roomID {
			t.Fatalf("the chat's rooms after linking: %v, %v", rs, err)
		}
		if err = db.SetRoomRelay(ctx, roomID, "relay-login", ""); err != nil {
			t.Fatal(err)
		}
		if got, err = db.GetRoom(ctx, roomID); err != nil || got.RelayLogin != "relay-login" || got.ChatID != "#memo" {
			t.Fatalf("after setting the relay: %+v, %v", got, err)
		}
		if err = db.DeleteRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		if got, err = db.GetRoom(ctx, roomID); err != nil || got != nil {
			t.Fatalf("after unlinking: %+v, %v", got, err)
		}
		if rs, err := db.RoomsForChat(ctx, "irc", "#memo", ""); err != nil || len(rs) != 0 {
			t.Fatalf("the chat's rooms after unlinking: %v, %v", rs, err)
		}

		rollback := errors.New("roll back")
		err = db.DoTxn(ctx, nil, func(ctx context.Context) error {
			if err := db.InsertRoom(ctx, room); err != nil {
				return err
			}
			if r, err := db.GetRoom(ctx, roomID); err != nil || r == nil {
				t.Errorf("inside the transaction: %+v, %v", r, err)
			}
			return rollback
		})
		if !errors.Is(err, rollback) {
			t.Fatal(err)
		}
		if got, err = db.GetRoom(ctx, roomID); err != nil || got != nil {
			t.Fatalf("after a rolled-back link: %+v, %v", got, err)
		}

		const dm = "!dm:example.org"
		if owner, err := db.IsManagementRoom(ctx, dm); err != nil || owner != "" {
			t.Fatalf("not yet a management room: %q, %v", owner, err)
		}
		if err = db.SetManagementRoom(ctx, "@ann:example.org", dm); err != nil {
			t.Fatal(err)
		}
		if owner, err := db.IsManagementRoom(ctx, dm); err != nil || owner != "@ann:example.org" {
			t.Fatalf("the management room's owner: %q, %v", owner, err)
		}

		if ls, err := db.LoginsOfUser(ctx, "@ann:example.org"); err != nil || len(ls) != 0 {
			t.Fatalf("no logins yet: %v, %v", ls, err)
		}
		login := &database.LoginRow{Connector: "irc", LoginID: "ann", MXID: "@ann:example.org", Metadata: []byte(`{"nick":"ann"}`)}
		if err = db.UpsertLogin(ctx, login); err != nil {
			t.Fatal(err)
		}
		ls, err := db.LoginsOfUser(ctx, "@ann:example.org")
		if err != nil || len(ls) != 1 {
			t.Fatalf("after logging in: %v, %v", ls, err)
		}
		ls[0].Metadata[2] = 'X'
		if err = db.SetLoginState(ctx, "irc", "ann", "connected", ""); err != nil {
			t.Fatal(err)
		}
		if ls, err = db.LoginsOfUser(ctx, "@ann:example.org"); err != nil || ls[0].State != "connected" || string(ls[0].Metadata) != `{"nick":"ann"}` {
			t.Fatalf("after a state change: %+v, %v", ls[0], err)
		}
		if err = db.SetLoginMetadata(ctx, "irc", "ann", []byte(`{"nick":"ann2"}`)); err != nil {
			t.Fatal(err)
		}
		if ls, err = db.LoginsOfUser(ctx, "@ann:example.org"); err != nil || string(ls[0].Metadata) != `{"nick":"ann2"}` {
			t.Fatalf("after new metadata: %+v, %v", ls[0], err)
		}
		if err = db.DeleteLogin(ctx, "irc", "ann"); err != nil {
			t.Fatal(err)
		}
		if ls, err = db.LoginsOfUser(ctx, "@ann:example.org"); err != nil || len(ls) != 0 {
			t.Fatalf("after logging out: %v, %v", ls, err)
		}
	})
}
