package relaybot

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/tests/harness"
)

// legacySchema is what newStore ran at every start before the relay bot's tables were
// versioned, kept verbatim: it builds the database an upgraded bridge finds.
const legacySchema = `
CREATE TABLE IF NOT EXISTS relaybot_conversation (
	room_id    TEXT   PRIMARY KEY,
	account    TEXT   NOT NULL,
	connector  TEXT   NOT NULL,
	chat_id    TEXT   NOT NULL,
	receiver   TEXT   NOT NULL,
	contact     TEXT    NOT NULL,
	opened_by   TEXT    NOT NULL DEFAULT '',
	login_owner TEXT    NOT NULL DEFAULT '',
	ready       INTEGER NOT NULL DEFAULT 0,
	created_at  BIGINT  NOT NULL,
	closed_at   BIGINT
);
CREATE TABLE IF NOT EXISTS relaybot_assignee (
	room_id TEXT NOT NULL REFERENCES relaybot_conversation (room_id) ON DELETE CASCADE,
	user_id TEXT NOT NULL,
	PRIMARY KEY (room_id, user_id)
);
CREATE TABLE IF NOT EXISTS relaybot_greeted (
	account   TEXT NOT NULL,
	connector TEXT NOT NULL,
	chat_id   TEXT NOT NULL,
	receiver  TEXT NOT NULL,
	PRIMARY KEY (account, connector, chat_id, receiver)
);
CREATE TABLE IF NOT EXISTS relaybot_lobby (
	account TEXT PRIMARY KEY,
	room_id TEXT NOT NULL
);`

// TestMigrations checks the relay bot's tables on both backends: a new database gets
// them and a version row, and one whose tables the old unversioned code made upgrades
// in place without losing rows.
func TestMigrations(t *testing.T) {
	backends := []struct {
		name string
		uri  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "bridge.db") }},
		{"postgres", freshPostgres},
	}
	chat := bridge.PortalKey{Connector: "irc", ChatID: "net/guest", Receiver: "net/@support:x"}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Run("fresh", func(t *testing.T) {
				ctx := context.Background()
				core := openCore(t, b.name, b.uri(t))
				s, err := newStore(ctx, core.Database)
				if err != nil {
					t.Fatalf("newStore: %v", err)
				}
				for _, table := range []string{"relaybot_conversation", "relaybot_assignee", "relaybot_greeted", "relaybot_lobby"} {
					if exists, err := s.db.TableExists(ctx, table); err != nil || !exists {
						t.Errorf("table %s exists = %v, %v", table, exists, err)
					}
				}
				checkVersion(t, s.db)
				if err = s.setLobby(ctx, "support", "!lobby:x"); err != nil {
					t.Fatalf("setLobby: %v", err)
				}
				// A restart finds the schema current and the records kept.
				if s, err = newStore(ctx, core.Database); err != nil {
					t.Fatalf("newStore again: %v", err)
				}
				checkVersion(t, s.db)
				if room, err := s.lobby(ctx, "support"); err != nil || room != "!lobby:x" {
					t.Errorf("lobby after restart = %q, %v", room, err)
				}
			})
			t.Run("legacy tables", func(t *testing.T) {
				ctx := context.Background()
				core := openCore(t, b.name, b.uri(t))
				if _, err := core.Exec(ctx, legacySchema); err != nil {
					t.Fatalf("creating the tables the old way: %v", err)
				}
				created := time.Now().Add(-time.Hour).UnixMilli()
				for _, q := range []struct {
					query string
					args  []any
				}{
					{`INSERT INTO relaybot_conversation (room_id, account, connector, chat_id, receiver, contact, opened_by,
						login_owner, ready, created_at) VALUES ('!a:x', 'support', $1, $2, $3, 'guest', 'incoming', '@support:x', 1, $4)`,
						[]any{chat.Connector, chat.ChatID, chat.Receiver, created}},
					{`INSERT INTO relaybot_assignee (room_id, user_id) VALUES ('!a:x', '@alice:x')`, nil},
					{`INSERT INTO relaybot_greeted (account, connector, chat_id, receiver) VALUES ('support', $1, $2, $3)`,
						[]any{chat.Connector, chat.ChatID, chat.Receiver}},
					{`INSERT INTO relaybot_lobby (account, room_id) VALUES ('support', '!lobby:x')`, nil},
				} {
					if _, err := core.Exec(ctx, q.query, q.args...); err != nil {
						t.Fatalf("inserting a row the old way: %v", err)
					}
				}
				// As before versioned migrations: the tables, but no version table.
				if exists, err := core.TableExists(ctx, versionTable); err != nil || exists {
					t.Fatalf("%s exists before the upgrade = %v, %v", versionTable, exists, err)
				}
				s, err := newStore(ctx, core.Database)
				if err != nil {
					t.Fatalf("upgrading tables made by the old code: %v", err)
				}
				checkVersion(t, s.db)
				c, err := s.conversation(ctx, "!a:x")
				if err != nil || c == nil {
					t.Fatalf("conversation after upgrade = %+v, %v", c, err)
				}
				if c.Chat != chat || c.Contact != "guest" || c.Trigger != bridge.TriggerIncoming || c.LoginOwner != "@support:x" ||
					c.CreatedAt.UnixMilli() != created || len(c.Assignees) != 1 || c.Assignees[0] != "@alice:x" {
					t.Errorf("conversation after upgrade = %+v", c)
				}
				if first, err := s.markGreeted(ctx, "support", chat); err != nil || first {
					t.Errorf("greeting after upgrade recorded as first = %v, %v; the old record was lost", first, err)
				}
				if room, err := s.lobby(ctx, "support"); err != nil || room != "!lobby:x" {
					t.Errorf("lobby after upgrade = %q, %v", room, err)
				}
			})
		})
	}
}

// freshPostgres creates a database for one test on the server CI provides (or the one
// $PASSERELLE_TEST_POSTGRES names) and drops it afterwards. An unreachable server fails
// the test: the PostgreSQL path must not go untested silently.
func freshPostgres(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	uri, drop, err := harness.NewPostgresDB(ctx)
	if err != nil {
		t.Fatalf("PostgreSQL needed (start it, or point PASSERELLE_TEST_POSTGRES at a server where the user may CREATE DATABASE): %v", err)
	}
	t.Cleanup(drop)
	return uri
}

func openCore(t *testing.T, backend, uri string) *database.Database {
	t.Helper()
	core, err := database.Open(context.Background(), backend, uri, 0, zerolog.Nop())
	if err != nil {
		t.Fatalf("database.Open: %v", err)
	}
	t.Cleanup(func() { _ = core.Close() })
	return core
}

// checkVersion asserts relaybot_version holds one row at the latest version.
func checkVersion(t *testing.T, db *dbutil.Database) {
	t.Helper()
	var rows, version int
	err := db.QueryRow(context.Background(), `SELECT COUNT(*), COALESCE(MAX(version), 0) FROM `+versionTable).Scan(&rows, &version)
	if want := len(upgrades()); err != nil || rows != 1 || version != want {
		t.Fatalf("%s: %d rows at v%d, %v; want one row at v%d", versionTable, rows, version, err, want)
	}
}
