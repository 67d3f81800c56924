package database_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

func TestMigrationsRunTwice(t *testing.T) {
	for _, be := range dbtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			uri := be.URI(t)
			db, err := database.Open(ctx, be.Name, uri, 0, zerolog.Nop())
			if err != nil {
				t.Fatalf("first Open: %v", err)
			}
			if _, err = db.Enqueue(ctx, "k", "matrix", []byte(`{}`)); err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
			if err = db.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			db = dbtest.Open(t, be.Name, uri)
			n, err := db.QueueLength(ctx)
			if err != nil {
				t.Fatalf("QueueLength after reopen: %v", err)
			}
			if n != 1 {
				t.Errorf("queue length after reopen = %d, want 1 (data must survive)", n)
			}
		})
	}
}

func TestSQLiteFileMode(t *testing.T) {
	tests := []struct {
		name string
		// prior mode of an existing file; 0 means the file does not exist yet
		prior os.FileMode
	}{
		{"new file", 0},
		{"existing world-readable file", 0o644},
		{"existing group-writable file", 0o664},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bridge.db")
			if tt.prior != 0 {
				if err := os.WriteFile(path, nil, tt.prior); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.prior); err != nil {
					t.Fatal(err)
				}
			}
			db := dbtest.Open(t, "sqlite", path)
			if _, err := db.Enqueue(context.Background(), "k", "matrix", []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				info, err := os.Stat(p)
				if os.IsNotExist(err) && p != path {
					continue
				} else if err != nil {
					t.Fatal(err)
				}
				if got := info.Mode().Perm(); got != 0o600 {
					t.Errorf("%s mode = %o, want 600", filepath.Base(p), got)
				}
			}
		})
	}
}

func txnItem(key string) database.TxnItem {
	return database.TxnItem{DedupKey: key, Key: "matrix:!room:example.org", Kind: "matrix", Payload: []byte(`{"event_id":"` + key + `"}`)}
}

func TestAcceptTransactionDedup(t *testing.T) {
	type step struct {
		keys []string
		want []string // payload event IDs newly queued
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"retry with one old and one new event", []step{
			{keys: []string{"$a", "$b"}, want: []string{"$a", "$b"}},
			{keys: []string{"$a", "$c"}, want: []string{"$c"}},
		}},
		{"identical retry queues nothing", []step{
			{keys: []string{"$a"}, want: []string{"$a"}},
			{keys: []string{"$a"}, want: nil},
		}},
		{"duplicate within one transaction", []step{
			{keys: []string{"$a", "$a", "$b"}, want: []string{"$a", "$b"}},
		}},
		{"empty transaction", []step{
			{keys: nil, want: nil},
		}},
	}
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		for ti, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				prefix := fmt.Sprintf("t%d", ti) // keys are global; keep the cases apart
				var total int
				var lastSeq int64
				for si, st := range tt.steps {
					items := make([]database.TxnItem, len(st.keys))
					for i, k := range st.keys {
						items[i] = txnItem(prefix + k)
					}
					added, err := db.AcceptTransaction(ctx, items)
					if err != nil {
						t.Fatalf("step %d: %v", si, err)
					}
					var got []string
					for _, it := range added {
						got = append(got, string(it.Payload))
						if it.Seq <= lastSeq {
							t.Errorf("step %d: seq %d not increasing after %d", si, it.Seq, lastSeq)
						}
						lastSeq = it.Seq
						if it.Key != "matrix:!room:example.org" || it.Kind != "matrix" {
							t.Errorf("step %d: item key/kind = %q/%q", si, it.Key, it.Kind)
						}
					}
					var want []string
					for _, k := range st.want {
						want = append(want, string(txnItem(prefix+k).Payload))
					}
					if !slices.Equal(got, want) {
						t.Errorf("step %d: added %v, want %v", si, got, want)
					}
					total += len(want)
				}
				pending, err := db.PendingQueue(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, it := range pending {
					if err = db.CompleteQueueItem(ctx, it.Seq); err != nil {
						t.Fatal(err)
					}
				}
				if len(pending) != total {
					t.Errorf("database holds %d queued items, want %d", len(pending), total)
				}
			})
		}
	})
}

func TestPendingQueueOrder(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		inputs := []struct{ key, kind, payload string }{
			{"matrix:!a", "matrix", `{"n":1}`},
			{"remote:irc|#b", "remote", `{"n":2}`},
			{"matrix:!a", "ephemeral", `{"n":3}`},
			{"remote:irc|#b", "remote", `{"n":4}`},
			{"matrix:!c", "matrix", `{"n":5,"s":"ünïcødé"}`},
		}
		var seqs []int64
		for _, in := range inputs {
			it, err := db.Enqueue(ctx, in.key, in.kind, []byte(in.payload))
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, it.Seq)
		}
		got, err := db.PendingQueue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(inputs) {
			t.Fatalf("PendingQueue returned %d items, want %d", len(got), len(inputs))
		}
		for i, it := range got {
			in := inputs[i]
			if it.Seq != seqs[i] || it.Key != in.key || it.Kind != in.kind || string(it.Payload) != in.payload {
				t.Errorf("item %d = {%d %q %q %s}, want {%d %q %q %s}", i, it.Seq, it.Key, it.Kind, it.Payload, seqs[i], in.key, in.kind, in.payload)
			}
			if !it.Resumed {
				t.Errorf("item %d: Resumed = false, want true", i)
			}
			if it.Attempts != 0 {
				t.Errorf("item %d: Attempts = %d, want 0", i, it.Attempts)
			}
			if i > 0 && it.Seq <= got[i-1].Seq {
				t.Errorf("item %d: seq %d not after %d", i, it.Seq, got[i-1].Seq)
			}
		}
	})
}

func TestCompleteAndIncrementAttempts(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		a, err := db.Enqueue(ctx, "k", "matrix", []byte(`a`))
		if err != nil {
			t.Fatal(err)
		}
		b, err := db.Enqueue(ctx, "k", "matrix", []byte(`b`))
		if err != nil {
			t.Fatal(err)
		}
		for want := 1; want <= 3; want++ {
			n, err := db.IncrementAttempts(ctx, a.Seq)
			if err != nil {
				t.Fatal(err)
			}
			if n != want {
				t.Errorf("IncrementAttempts #%d = %d, want %d", want, n, want)
			}
		}
		if n, err := db.IncrementAttempts(ctx, b.Seq+1000); err != nil || n != 0 {
			t.Errorf("IncrementAttempts(missing) = %d, %v; want 0, nil", n, err)
		}
		pending, err := db.PendingQueue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		attempts := map[int64]int{}
		for _, it := range pending {
			attempts[it.Seq] = it.Attempts
		}
		if attempts[a.Seq] != 3 || attempts[b.Seq] != 0 {
			t.Errorf("stored attempts = %v, want %d:3 %d:0", attempts, a.Seq, b.Seq)
		}

		if err = db.CompleteQueueItem(ctx, a.Seq); err != nil {
			t.Fatal(err)
		}
		if err = db.CompleteQueueItem(ctx, a.Seq); err != nil {
			t.Errorf("completing an already completed item: %v", err)
		}
		pending, err = db.PendingQueue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) != 1 || pending[0].Seq != b.Seq {
			t.Errorf("after completing %d, pending = %+v, want only %d", a.Seq, pending, b.Seq)
		}
		if n, err := db.QueueLength(ctx); err != nil || n != 1 {
			t.Errorf("QueueLength = %d, %v; want 1", n, err)
		}
	})
}

func mustPortal(t *testing.T, db *database.Database, connector, chat, receiver string) {
	t.Helper()
	if err := db.UpsertPortal(context.Background(), &database.PortalRow{Connector: connector, ChatID: chat, Receiver: receiver, Name: chat}); err != nil {
		t.Fatal(err)
	}
}

func mustRoom(t *testing.T, db *database.Database, r database.RoomRow) {
	t.Helper()
	if err := db.InsertRoom(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
}

func TestPortalRoomLinking(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		mustPortal(t, db, "irc", "libera/#go", "")
		mustPortal(t, db, "irc", "libera/#rust", "")
		// The plumbed rooms are linked before the portal: ordering must not depend on it.
		mustRoom(t, db, database.RoomRow{RoomID: "!plumb1:x", Connector: "irc", ChatID: "libera/#go", Kind: database.RoomPlumbed, CreatedBy: "@mod:x"})
		mustRoom(t, db, database.RoomRow{RoomID: "!portal:x", Connector: "irc", ChatID: "libera/#go", Kind: database.RoomPortal})
		mustRoom(t, db, database.RoomRow{RoomID: "!plumb2:x", Connector: "irc", ChatID: "libera/#go", Kind: database.RoomPlumbed})
		mustRoom(t, db, database.RoomRow{RoomID: "!rust:x", Connector: "irc", ChatID: "libera/#rust", Kind: database.RoomPortal})

		rooms, err := db.RoomsForChat(ctx, "irc", "libera/#go", "")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rooms {
			ids = append(ids, r.RoomID)
		}
		if len(ids) != 3 || ids[0] != "!portal:x" || rooms[0].Kind != database.RoomPortal {
			t.Fatalf("RoomsForChat = %v, want the portal first then two plumbed rooms", ids)
		}
		if rest := slices.Sorted(slices.Values(ids[1:])); !slices.Equal(rest, []string{"!plumb1:x", "!plumb2:x"}) {
			t.Errorf("plumbed rooms = %v", rest)
		}
		if r, err := db.GetRoom(ctx, "!plumb1:x"); err != nil || r == nil || r.Kind != database.RoomPlumbed || r.CreatedBy != "@mod:x" {
			t.Errorf("GetRoom(!plumb1) = %+v, %v", r, err)
		}
		if r, err := db.GetRoom(ctx, "!unknown:x"); err != nil || r != nil {
			t.Errorf("GetRoom(unknown) = %+v, %v; want nil, nil", r, err)
		}

		// Message rows of a deleted room go with it; other rooms' rows stay.
		msgs := []*database.MessageRow{
			{RoomID: "!plumb1:x", EventID: "$e1", Connector: "irc", ChatID: "libera/#go", RemoteID: "r1"},
			{RoomID: "!portal:x", EventID: "$e2", Connector: "irc", ChatID: "libera/#go", RemoteID: "r1"},
		}
		if err = db.InsertMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		if err = db.DeleteRoom(ctx, "!plumb1:x"); err != nil {
			t.Fatal(err)
		}
		if m, err := db.MessagesByEvent(ctx, "!plumb1:x", "$e1"); err != nil || len(m) != 0 {
			t.Errorf("messages of deleted room = %d, %v; want none", len(m), err)
		}
		if m, err := db.MessagesByEvent(ctx, "!portal:x", "$e2"); err != nil || len(m) != 1 {
			t.Errorf("messages of other room = %d, %v; want 1", len(m), err)
		}
		if r, err := db.GetRoom(ctx, "!plumb1:x"); err != nil || r != nil {
			t.Errorf("deleted room still linked: %+v, %v", r, err)
		}

		// A portal keeps its row while any room links it.
		tests := []struct {
			name       string
			deleteRoom []string
			wantPortal bool
		}{
			{"two rooms left", nil, true},
			{"portal room removed, plumbed room left", []string{"!portal:x"}, true},
			{"last room removed", []string{"!plumb2:x"}, false},
		}
		for _, tt := range tests {
			for _, r := range tt.deleteRoom {
				if err = db.DeleteRoom(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			if err = db.DeletePortalIfUnlinked(ctx, "irc", "libera/#go", ""); err != nil {
				t.Fatal(err)
			}
			p, err := db.GetPortal(ctx, "irc", "libera/#go", "")
			if err != nil {
				t.Fatal(err)
			}
			if (p != nil) != tt.wantPortal {
				t.Errorf("%s: portal present = %v, want %v", tt.name, p != nil, tt.wantPortal)
			}
		}
		if p, err := db.GetPortal(ctx, "irc", "libera/#rust", ""); err != nil || p == nil {
			t.Errorf("unrelated portal touched: %+v, %v", p, err)
		}
	})
}

func TestMessageMap(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		base := database.MessageRow{RoomID: "!r:x", EventID: "$long", Connector: "irc", ChatID: "libera/#go", SenderMXID: "@alice:x"}
		// Inserted out of order: the query must sort by part.
		var parts []*database.MessageRow
		for _, p := range []int{2, 0, 1} {
			m := base
			m.Part = p
			m.RemoteID = fmt.Sprintf("remote-%d", p)
			parts = append(parts, &m)
		}
		if err := db.InsertMessages(ctx, parts...); err != nil {
			t.Fatal(err)
		}
		// Inserting again leaves the rows as they are.
		again := *parts[0]
		again.SenderMXID = "@mallory:x"
		if err := db.InsertMessages(ctx, &again); err != nil {
			t.Fatal(err)
		}
		reaction := &database.MessageRow{RoomID: "!r:x", EventID: "$react", Connector: "irc", ChatID: "libera/#go", RemoteID: "react-1",
			Kind: database.KindReaction, SenderMXID: "@bob:x", TargetRemoteID: "remote-0", Emoji: "👍"}
		if err := db.InsertMessages(ctx, reaction); err != nil {
			t.Fatal(err)
		}

		got, err := db.MessagesByEvent(ctx, "!r:x", "$long")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("MessagesByEvent returned %d rows, want 3", len(got))
		}
		for i, m := range got {
			if m.Part != i || m.RemoteID != fmt.Sprintf("remote-%d", i) || m.Kind != database.KindMessage || m.SenderMXID != "@alice:x" {
				t.Errorf("row %d = part %d remote %q kind %q sender %q", i, m.Part, m.RemoteID, m.Kind, m.SenderMXID)
			}
		}

		remoteTests := []struct {
			name, room, remote string
			wantEvent          string
			wantPart           int
		}{
			{"middle part", "!r:x", "remote-1", "$long", 1},
			{"first part", "!r:x", "remote-0", "$long", 0},
			{"reaction", "!r:x", "react-1", "$react", 0},
			{"unknown remote ID", "!r:x", "remote-9", "", 0},
			{"other room", "!other:x", "remote-1", "", 0},
		}
		for _, tt := range remoteTests {
			m, err := db.MessageByRemote(ctx, tt.room, "irc", "libera/#go", "", tt.remote)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if tt.wantEvent == "" {
				if m != nil {
					t.Errorf("%s: MessageByRemote = %+v, want nil", tt.name, m)
				}
				continue
			}
			if m == nil || m.EventID != tt.wantEvent || m.Part != tt.wantPart {
				t.Errorf("%s: MessageByRemote = %+v, want event %s part %d", tt.name, m, tt.wantEvent, tt.wantPart)
			}
		}

		reactionTests := []struct {
			name, target, sender, emoji string
			found                       bool
		}{
			{"exact", "remote-0", "@bob:x", "👍", true},
			{"other emoji", "remote-0", "@bob:x", "👎", false},
			{"other sender", "remote-0", "@alice:x", "👍", false},
			{"other target", "remote-1", "@bob:x", "👍", false},
			{"message rows are not reactions", "", "@alice:x", "", false},
		}
		for _, tt := range reactionTests {
			m, err := db.ReactionBy(ctx, "!r:x", tt.target, tt.sender, tt.emoji)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if (m != nil) != tt.found {
				t.Errorf("%s: ReactionBy found = %v, want %v", tt.name, m != nil, tt.found)
			} else if m != nil && (m.EventID != "$react" || m.Kind != database.KindReaction || m.RemoteID != "react-1") {
				t.Errorf("%s: ReactionBy = %+v", tt.name, m)
			}
		}

		if err = db.DeleteMessagesByEvent(ctx, "!r:x", "$long"); err != nil {
			t.Fatal(err)
		}
		if got, err = db.MessagesByEvent(ctx, "!r:x", "$long"); err != nil || len(got) != 0 {
			t.Errorf("after DeleteMessagesByEvent: %d rows, %v", len(got), err)
		}
	})
}

func TestPruneMessages(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		now := time.Now()
		cutoff := now.Add(-24 * time.Hour)
		rows := []struct {
			event string
			age   time.Duration
			kept  bool
		}{
			{"$ancient", 90 * 24 * time.Hour, false},
			{"$old", 25 * time.Hour, false},
			{"$just-older", 24*time.Hour + time.Second, false},
			{"$just-newer", 24*time.Hour - time.Second, true},
			{"$new", time.Minute, true},
		}
		var wantDeleted int64
		for i, r := range rows {
			m := &database.MessageRow{RoomID: "!r:x", EventID: r.event, Connector: "irc", ChatID: "c", RemoteID: fmt.Sprint(i), CreatedAt: now.Add(-r.age)}
			if err := db.InsertMessages(ctx, m); err != nil {
				t.Fatal(err)
			}
			if !r.kept {
				wantDeleted++
			}
		}
		n, err := db.PruneMessages(ctx, cutoff)
		if err != nil {
			t.Fatal(err)
		}
		if n != wantDeleted {
			t.Errorf("PruneMessages deleted %d rows, want %d", n, wantDeleted)
		}
		for _, r := range rows {
			got, err := db.MessagesByEvent(ctx, "!r:x", r.event)
			if err != nil {
				t.Fatal(err)
			}
			if (len(got) == 1) != r.kept {
				t.Errorf("%s (age %v): kept = %v, want %v", r.event, r.age, len(got) == 1, r.kept)
			}
		}
	})
}

func TestDeleteLoginClearsRelay(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		for _, l := range []database.LoginRow{
			{Connector: "irc", LoginID: "relay1", MXID: "@admin:x"},
			{Connector: "irc", LoginID: "relay2", MXID: "@admin:x"},
			{Connector: "wa", LoginID: "relay1", MXID: "@admin:x"},
		} {
			if err := db.UpsertLogin(ctx, &l); err != nil {
				t.Fatal(err)
			}
		}
		mustPortal(t, db, "irc", "c1", "")
		mustPortal(t, db, "wa", "c2", "")
		rooms := []struct {
			room, connector, chat, relay string
			wantRelay                    string
		}{
			{"!a:x", "irc", "c1", "relay1", ""},
			{"!b:x", "irc", "c1", "relay1", ""},
			{"!c:x", "irc", "c1", "relay2", "relay2"},
			{"!d:x", "irc", "c1", "", ""},
			// Same login ID on another connector is another login.
			{"!e:x", "wa", "c2", "relay1", "relay1"},
		}
		for i, r := range rooms {
			kind := database.RoomPlumbed
			if i == 0 {
				kind = database.RoomPortal
			}
			mustRoom(t, db, database.RoomRow{RoomID: r.room, Connector: r.connector, ChatID: r.chat, Kind: kind, RelayLogin: r.relay})
		}
		if err := db.DeleteLogin(ctx, "irc", "relay1"); err != nil {
			t.Fatal(err)
		}
		for _, r := range rooms {
			got, err := db.GetRoom(ctx, r.room)
			if err != nil || got == nil {
				t.Fatalf("GetRoom(%s) = %+v, %v", r.room, got, err)
			}
			if got.RelayLogin != r.wantRelay {
				t.Errorf("%s relay = %q, want %q", r.room, got.RelayLogin, r.wantRelay)
			}
		}
		loginTests := []struct {
			connector, id string
			exists        bool
		}{
			{"irc", "relay1", false},
			{"irc", "relay2", true},
			{"wa", "relay1", true},
		}
		for _, lt := range loginTests {
			l, err := db.GetLogin(ctx, lt.connector, lt.id)
			if err != nil {
				t.Fatal(err)
			}
			if (l != nil) != lt.exists {
				t.Errorf("login %s/%s exists = %v, want %v", lt.connector, lt.id, l != nil, lt.exists)
			}
		}
	})
}

// BenchmarkAcceptTransaction stores transactions of 10 fresh events each.
func BenchmarkAcceptTransaction(b *testing.B) {
	const perTxn = 10
	for _, be := range dbtest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			db := dbtest.Open(b, be.Name, be.URI(b))
			ctx := context.Background()
			items := make([]database.TxnItem, perTxn)
			payload := []byte(`{"type":"m.room.message","room_id":"!bench:example.org","content":{"msgtype":"m.text","body":"hello"}}`)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				for j := range items {
					items[j] = database.TxnItem{DedupKey: fmt.Sprintf("$bench-%d-%d", i, j), Key: "matrix:!bench:example.org", Kind: "matrix", Payload: payload}
				}
				added, err := db.AcceptTransaction(ctx, items)
				if err != nil {
					b.Fatal(err)
				}
				if len(added) != perTxn {
					b.Fatalf("added %d items, want %d", len(added), perTxn)
				}
			}
			elapsed := b.Elapsed()
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/op")
			b.ReportMetric(float64(perTxn*b.N)/elapsed.Seconds(), "events/s")
		})
	}
}
