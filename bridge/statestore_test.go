package bridge

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

// TestStateStoreJoinedMembers: the joined members remembered per room follow every
// membership write (a join, a new display name, a leave, the member list replaced
// from the homeserver, cleared), on both databases; another room's writes leave a
// room's memory alone.
func TestStateStoreJoinedMembers(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		s := newStateStore(sqlstatestore.NewSQLStateStore(db.Database, nil, true))
		if err := s.Upgrade(ctx); err != nil {
			t.Fatal(err)
		}
		room, other := id.RoomID("!room:example.org"), id.RoomID("!other:example.org")
		ann, bob := id.UserID("@ann:example.org"), id.UserID("@bob:example.org")
		names := func(want map[id.UserID]string) {
			t.Helper()
			got, err := s.JoinedMembers(ctx, room)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("joined members %v, want %v", got, want)
			}
			for u, name := range want {
				if m := got[u]; m == nil || m.Displayname != name {
					t.Fatalf("member %s: %+v, want name %q", u, m, name)
				}
				if m, err := s.GetMember(ctx, room, u); err != nil || m.Displayname != name {
					t.Fatalf("GetMember %s: %+v, %v", u, m, err)
				}
			}
		}
		names(map[id.UserID]string{})
		if err := s.SetMember(ctx, room, ann, &event.MemberEventContent{Membership: event.MembershipJoin, Displayname: "Ann"}); err != nil {
			t.Fatal(err)
		}
		names(map[id.UserID]string{ann: "Ann"})
		if err := s.SetMember(ctx, room, ann, &event.MemberEventContent{Membership: event.MembershipJoin, Displayname: "Ann B."}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetMember(ctx, room, bob, &event.MemberEventContent{Membership: event.MembershipJoin, Displayname: "Bob"}); err != nil {
			t.Fatal(err)
		}
		names(map[id.UserID]string{ann: "Ann B.", bob: "Bob"})
		// Writes to another room do not touch this one's memory.
		if err := s.SetMembership(ctx, other, ann, event.MembershipLeave); err != nil {
			t.Fatal(err)
		}
		names(map[id.UserID]string{ann: "Ann B.", bob: "Bob"})
		if err := s.SetMembership(ctx, room, bob, event.MembershipLeave); err != nil {
			t.Fatal(err)
		}
		names(map[id.UserID]string{ann: "Ann B."})
		key := bob.String()
		joined := &event.Event{Type: event.StateMember, StateKey: &key, Content: event.Content{
			Parsed: &event.MemberEventContent{Membership: event.MembershipJoin, Displayname: "Bob again"}}}
		if err := s.ReplaceCachedMembers(ctx, room, []*event.Event{joined}, event.MembershipJoin); err != nil {
			t.Fatal(err)
		}
		names(map[id.UserID]string{bob: "Bob again"})
		if err := s.ClearCachedMembers(ctx, room); err != nil {
			t.Fatal(err)
		}
		names(map[id.UserID]string{})
	})
}
