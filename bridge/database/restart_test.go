package database_test

import (
	"context"
	"testing"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

// TestRestartState covers what a restart reads back: the chats with rooms, portals
// whose watchers were not told yet, and login flow marks.
func TestRestartState(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		mustPortal(t, db, "irc", "net/#a", "")
		mustPortal(t, db, "irc", "net/#b", "")
		mustPortal(t, db, "wa", "chat", "login")
		mustRoom(t, db, database.RoomRow{RoomID: "!a1", Connector: "irc", ChatID: "net/#a", Kind: database.RoomPortal})
		mustRoom(t, db, database.RoomRow{RoomID: "!a2", Connector: "irc", ChatID: "net/#a", Kind: database.RoomPlumbed})
		mustRoom(t, db, database.RoomRow{RoomID: "!w", Connector: "wa", ChatID: "chat", Receiver: "login", Kind: database.RoomPortal,
			PendingWatch: `{"key":{}}`})
		linked, err := db.LinkedChats(ctx, "irc")
		if err != nil {
			t.Fatal(err)
		}
		// #b has a portal row but no room: nothing to rejoin. #a is listed once.
		if len(linked) != 1 || linked[0] != [3]string{"irc", "net/#a", ""} {
			t.Fatalf("linked chats %v", linked)
		}
		pending, err := db.PendingWatches(ctx)
		if err != nil || len(pending) != 1 || pending["!w"] != `{"key":{}}` {
			t.Fatalf("pending watches %v, %v", pending, err)
		}
		if err = db.ClearPendingWatch(ctx, "!w"); err != nil {
			t.Fatal(err)
		}
		if pending, err = db.PendingWatches(ctx); err != nil || len(pending) != 0 {
			t.Fatalf("pending after clearing %v, %v", pending, err)
		}

		flow := &database.LoginFlowRow{MXID: "@u:x", RoomID: "!m", Connector: "irc"}
		if err = db.UpsertLoginFlow(ctx, flow); err != nil {
			t.Fatal(err)
		}
		flow.Secret, flow.Notified = true, true
		if err = db.UpsertLoginFlow(ctx, flow); err != nil {
			t.Fatal(err)
		}
		got, err := db.LoginFlow(ctx, "@u:x")
		if err != nil || got == nil || !got.Secret || !got.Notified || got.RoomID != "!m" {
			t.Fatalf("login flow %+v, %v", got, err)
		}
		all, err := db.AllLoginFlows(ctx)
		if err != nil || len(all) != 1 {
			t.Fatalf("all login flows %v, %v", all, err)
		}
		if err = db.DeleteLoginFlow(ctx, "@u:x"); err != nil {
			t.Fatal(err)
		}
		if got, err = db.LoginFlow(ctx, "@u:x"); err != nil || got != nil {
			t.Fatalf("login flow after delete %+v, %v", got, err)
		}
	})
}
