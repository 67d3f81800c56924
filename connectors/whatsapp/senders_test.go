package whatsapp

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow/types"
	"gopkg.in/yaml.v3"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

// TestSenderStore checks the message-sender record on both backends: senders come back
// in the form they were stored (phone number or hidden ID, device included), apart per
// login and chat, across a reopened database and an empty session cache (a restart);
// pruning and logging out delete what they should and nothing else.
func TestSenderStore(t *testing.T) {
	const (
		alice = "33600000001@s.whatsapp.net"
		bob   = "33600000002@s.whatsapp.net"
		group = "120363000000000001@g.us"
		dm    = "33612345678@s.whatsapp.net"
	)
	phone := types.NewADJID("33612345678", 0, 3)
	lid := types.NewJID("123456789012345", types.HiddenUserServer)
	dbtest.EachBackend(t, func(t *testing.T, core *database.Database) {
		ctx := context.Background()
		st := &senderStore{db: openTables(t, core), retention: time.Hour}
		get := func(st *senderStore, login, chat, msg string) (types.JID, bool) {
			t.Helper()
			j, ok, err := st.get(ctx, login, chat, msg)
			if err != nil {
				t.Fatalf("get %s/%s/%s: %v", login, chat, msg, err)
			}
			return j, ok
		}
		put := func(login, chat, msg string, sender types.JID) {
			t.Helper()
			if err := st.put(ctx, login, chat, msg, sender); err != nil {
				t.Fatalf("put %s/%s/%s: %v", login, chat, msg, err)
			}
		}
		put(alice, group, "M1", lid)
		put(alice, dm, "M1", phone) // same ID in another chat
		put(bob, group, "M1", phone)
		put(alice, group, "M2", lid)
		put(alice, group, "M2", phone) // delivered again: the last word stands
		for _, c := range []struct {
			login, chat, msg string
			want             types.JID
		}{
			{alice, group, "M1", lid}, {alice, dm, "M1", phone}, {bob, group, "M1", phone}, {alice, group, "M2", phone},
		} {
			if got, ok := get(st, c.login, c.chat, c.msg); !ok || got != c.want {
				t.Errorf("sender of %s/%s/%s = %s, %v; want %s", c.login, c.chat, c.msg, got, ok, c.want)
			}
		}
		if got, ok := get(st, alice, group, "UNKNOWN"); ok {
			t.Errorf("sender of an unknown message = %s, want none", got)
		}

		// A restart: the database reopened, a new session with nothing cached.
		db := openTables(t, core)
		st = &senderStore{db: db, retention: time.Hour}
		s := testSession(st, alice)
		if got, ok := s.senderOf(ctx, group, "M1"); !ok || got != lid {
			t.Errorf("after a restart senderOf(M1) = %s, %v; want %s", got, ok, lid)
		}
		if err := s.rememberSender(ctx, group, "M3", phone); err != nil {
			t.Fatalf("rememberSender: %v", err)
		}
		if got, ok := testSession(st, alice).senderOf(ctx, group, "M3"); !ok || got != phone {
			t.Errorf("a remembered sender read by a fresh session = %s, %v; want %s", got, ok, phone)
		}

		// Retention counts from when a row was written.
		old := time.Now().Add(-2 * time.Hour).UnixMilli()
		if _, err := db.Exec(ctx, `UPDATE whatsapp_message_sender SET created_at=$1 WHERE message_id='M2'`, old); err != nil {
			t.Fatal(err)
		}
		n, err := st.prune(ctx, time.Now().Add(-st.retention))
		if err != nil || n != 1 {
			t.Fatalf("prune = %d, %v; want the 1 old row", n, err)
		}
		if _, ok := get(st, alice, group, "M2"); ok {
			t.Error("a sender past retention was kept")
		}
		if _, ok := get(st, alice, group, "M1"); !ok {
			t.Error("a sender within retention was pruned")
		}

		// Logging out forgets the login's senders, not another login's.
		if err = st.forgetLogin(ctx, alice); err != nil {
			t.Fatalf("forgetLogin: %v", err)
		}
		for _, k := range []struct{ chat, msg string }{{group, "M1"}, {dm, "M1"}, {group, "M3"}} {
			if _, ok := get(st, alice, k.chat, k.msg); ok {
				t.Errorf("%s/%s kept after the login logged out", k.chat, k.msg)
			}
		}
		if got, ok := get(st, bob, group, "M1"); !ok || got != phone {
			t.Errorf("another login's sender after a logout = %s, %v; want %s", got, ok, phone)
		}
	})
}

// testSession is a session with nothing but what the sender record needs.
func testSession(st *senderStore, loginID string) *session {
	return &session{c: &Connector{senders: st}, login: &bridge.Login{ID: bridge.LoginID(loginID)}, log: zerolog.Nop(),
		senders: map[senderKey]types.JID{}}
}

// TestSenderCacheBounded: the session's cache in front of the database stays bounded
// and forgets the oldest first; the database still answers for what it dropped.
func TestSenderCacheBounded(t *testing.T) {
	s := testSession(nil, "login")
	jid := types.NewJID("33612345678", types.DefaultUserServer)
	for i := 0; i <= maxCachedSenders; i++ {
		s.cacheSender(senderKey{"chat", fmt.Sprintf("M%d", i)}, jid)
	}
	if len(s.senders) != maxCachedSenders || len(s.senderKeys) != maxCachedSenders {
		t.Fatalf("cache holds %d senders (%d keys), want %d", len(s.senders), len(s.senderKeys), maxCachedSenders)
	}
	if _, ok := s.senders[senderKey{"chat", "M0"}]; ok {
		t.Error("the oldest sender was not the one dropped")
	}
}

// TestSenderRetentionConfig: sender_retention defaults to 30 days and takes the core's
// duration forms.
func TestSenderRetentionConfig(t *testing.T) {
	for _, c := range []struct {
		yaml    string
		want    time.Duration
		wantErr bool
	}{
		{"history_count: 1", 30 * 24 * time.Hour, false},
		{"sender_retention: 7d", 7 * 24 * time.Hour, false},
		{"sender_retention: 12h", 12 * time.Hour, false},
		{"sender_retention: -1h", 0, true},
		{"sender_retention: forever", 0, true},
	} {
		var node yaml.Node
		if err := yaml.Unmarshal([]byte(c.yaml), &node); err != nil {
			t.Fatal(err)
		}
		cfg, err := parseConfig(node.Content[0])
		if c.wantErr {
			if err == nil {
				t.Errorf("%q: accepted as %s, want an error", c.yaml, cfg.SenderRetention)
			}
			continue
		}
		if err != nil || cfg.SenderRetention.Std() != c.want {
			t.Errorf("%q: retention %v, %v; want %v", c.yaml, cfg, err, c.want)
		}
	}
}
