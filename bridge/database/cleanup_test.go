package database_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

func TestCleanupFindsOnlyWhatNothingNeeds(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		states := sqlstatestore.NewSQLStateStore(db.Database, nil, true)
		if err := states.Upgrade(ctx); err != nil {
			t.Fatal(err)
		}
		ghost := func(name string) string {
			mxid := "@irc_" + name + ":example.org"
			if err := db.UpsertGhost(ctx, &database.GhostRow{Connector: "irc", RemoteID: name, MXID: mxid, Registered: true}); err != nil {
				t.Fatal(err)
			}
			return mxid
		}
		room := func(chat string, dm bool) string {
			roomID := "!" + chat + ":example.org"
			if err := db.UpsertPortal(ctx, &database.PortalRow{Connector: "irc", ChatID: chat, IsDM: dm}); err != nil {
				t.Fatal(err)
			}
			if err := db.InsertRoom(ctx, &database.RoomRow{RoomID: roomID, Connector: "irc", ChatID: chat, Kind: database.RoomPortal}); err != nil {
				t.Fatal(err)
			}
			return roomID
		}
		ghost("idle")
		spoke := ghost("spoke")
		member := ghost("member")
		left := ghost("left")
		talkative := room("talkative", true)
		quiet := room("quiet", true)
		room("channel", false)
		if err := db.InsertMessages(ctx, &database.MessageRow{RoomID: talkative, EventID: "$1", Connector: "irc", ChatID: "talkative",
			RemoteID: "r1", SenderMXID: spoke, CreatedAt: time.Now().Add(2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := states.SetMembership(ctx, id.RoomID(quiet), id.UserID(member), event.MembershipJoin); err != nil {
			t.Fatal(err)
		}
		if err := states.SetMembership(ctx, id.RoomID(quiet), id.UserID(left), event.MembershipLeave); err != nil {
			t.Fatal(err)
		}

		// Nothing is old enough yet.
		if g, err := db.UnusedGhosts(ctx, time.Now().Add(-time.Hour), 100); err != nil || len(g) != 0 {
			t.Fatalf("unused ghosts made in the last hour: %v (%v)", g, err)
		}
		// A cut-off after everything was made, and before spoke's message.
		later := time.Now().Add(time.Hour)
		g, err := db.UnusedGhosts(ctx, later, 100)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, row := range g {
			names = append(names, row.RemoteID)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"idle", "left"}) {
			t.Errorf("unused ghosts = %v, want [idle left] (spoke sent a message, member is in a room)", names)
		}
		rooms, err := db.QuietDMRooms(ctx, later, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(rooms) != 1 || rooms[0].RoomID != quiet {
			t.Errorf("quiet direct chats = %v, want only %s", rooms, quiet)
		}
		if err = db.DeleteGhost(ctx, "irc", "idle"); err != nil {
			t.Fatal(err)
		}
		if row, err := db.GetGhost(ctx, "irc", "idle"); err != nil || row != nil {
			t.Errorf("deleted ghost still there: %v (%v)", row, err)
		}
	})
}
