package relaybot

import (
	"context"
	"testing"
	"time"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
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
	chat := bridge.PortalKey{Connector: "irc", ChatID: "net/guest", Receiver: "net/@support:x"}
	t.Run("fresh", func(t *testing.T) {
		dbtest.EachBackend(t, func(t *testing.T, core *database.Database) {
			ctx := context.Background()
			s := openStore(t, core)
			dbtest.CheckTables(t, s.db, "relaybot_conversation", "relaybot_assignee", "relaybot_greeted", "relaybot_lobby")
			if err := s.setLobby(ctx, "support", "!lobby:x"); err != nil {
				t.Fatalf("setLobby: %v", err)
			}
			// A restart finds the schema current and the records kept.
			if room, err := openStore(t, core).lobby(ctx, "support"); err != nil || room != "!lobby:x" {
				t.Errorf("lobby after restart = %q, %v", room, err)
			}
		})
	})
	t.Run("legacy tables", func(t *testing.T) {
		dbtest.EachBackend(t, func(t *testing.T, core *database.Database) {
			ctx := context.Background()
			created := time.Now().Add(-time.Hour).UnixMilli()
			dbtest.Unversioned(t, core.Database, "relaybot_version", legacySchema,
				dbtest.Stmt{Query: `INSERT INTO relaybot_conversation (room_id, account, connector, chat_id, receiver, contact, opened_by,
					login_owner, ready, created_at) VALUES ('!a:x', 'support', $1, $2, $3, 'guest', 'incoming', '@support:x', 1, $4)`,
					Args: []any{chat.Connector, chat.ChatID, chat.Receiver, created}},
				dbtest.Stmt{Query: `INSERT INTO relaybot_assignee (room_id, user_id) VALUES ('!a:x', '@alice:x')`},
				dbtest.Stmt{Query: `INSERT INTO relaybot_greeted (account, connector, chat_id, receiver) VALUES ('support', $1, $2, $3)`,
					Args: []any{chat.Connector, chat.ChatID, chat.Receiver}},
				dbtest.Stmt{Query: `INSERT INTO relaybot_lobby (account, room_id) VALUES ('support', '!lobby:x')`})
			s := openStore(t, core)
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

// openStore opens the relay bot's store as the plugin does and checks relaybot_version
// holds one row at the latest version.
func openStore(t *testing.T, core *database.Database) *store {
	t.Helper()
	s, err := newStore(context.Background(), core.Database)
	if err != nil {
		t.Fatalf("newStore: %v", err)
	}
	dbtest.CheckVersion(t, s.db, "relaybot_version", bridge.TablesVersion(upgradeFiles))
	return s
}
