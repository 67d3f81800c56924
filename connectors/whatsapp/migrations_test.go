package whatsapp

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/bridge/database"
)

// legacySchema is what newDisappearing ran at every start before the connector's tables
// were versioned, kept verbatim: it builds the database an upgraded bridge finds.
const legacySchema = `
CREATE TABLE IF NOT EXISTS whatsapp_disappearing (
	chat_key   TEXT   NOT NULL,
	receiver   TEXT   NOT NULL,
	message_id TEXT   NOT NULL,
	expires_at BIGINT NOT NULL,
	PRIMARY KEY (chat_key, message_id)
);
CREATE INDEX IF NOT EXISTS whatsapp_disappearing_expiry ON whatsapp_disappearing (expires_at);
CREATE TABLE IF NOT EXISTS whatsapp_chat_timer (
	chat_key TEXT    NOT NULL PRIMARY KEY,
	receiver TEXT    NOT NULL,
	seconds  INTEGER NOT NULL
);`

// TestConnectorMigrations checks the connector's own tables on both backends: a new
// database gets them and a version row, one at v1 upgrades to the latest version and
// stays usable by v1, and one whose tables the old unversioned code made upgrades in
// place without losing rows.
func TestConnectorMigrations(t *testing.T) {
	backends := []struct {
		name string
		uri  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "bridge.db") }},
		{"postgres", freshPostgres},
	}
	key := bridge.PortalKey{Connector: connectorName, ChatID: "33612345678@s.whatsapp.net", Receiver: "33600000000"}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Run("fresh", func(t *testing.T) {
				ctx := context.Background()
				core := openCore(t, b.name, b.uri(t))
				db, err := openConnectorDB(ctx, core.Database, nil)
				if err != nil {
					t.Fatalf("openConnectorDB: %v", err)
				}
				for _, table := range []string{"whatsapp_disappearing", "whatsapp_chat_timer", "whatsapp_message_sender"} {
					if exists, err := db.TableExists(ctx, table); err != nil || !exists {
						t.Errorf("table %s exists = %v, %v", table, exists, err)
					}
				}
				checkVersion(t, db)
				d := &disappearing{db: db}
				if err = d.setChatTimer(ctx, key, 86400); err != nil {
					t.Fatalf("setChatTimer: %v", err)
				}
				// A restart finds the schema current and the timer kept.
				if db, err = openConnectorDB(ctx, core.Database, nil); err != nil {
					t.Fatalf("openConnectorDB again: %v", err)
				}
				checkVersion(t, db)
				if got := (&disappearing{db: db}).chatTimer(ctx, key); got != 86400 {
					t.Errorf("chat timer after restart = %d, want 86400", got)
				}
			})
			t.Run("from v1", func(t *testing.T) {
				// A database the first versioned release made: only 01-initial ran.
				ctx := context.Background()
				core := openCore(t, b.name, b.uri(t))
				if err := core.Child(connectorVersionTable, connectorUpgrades()[:1], nil).Upgrade(ctx); err != nil {
					t.Fatalf("upgrading to v1: %v", err)
				}
				v1 := &disappearing{db: core.Child(connectorVersionTable, connectorUpgrades()[:1], nil)}
				if err := v1.setChatTimer(ctx, key, 3600); err != nil {
					t.Fatalf("setChatTimer at v1: %v", err)
				}
				db, err := openConnectorDB(ctx, core.Database, nil)
				if err != nil {
					t.Fatalf("upgrading from v1: %v", err)
				}
				checkVersion(t, db)
				if got := (&disappearing{db: db}).chatTimer(ctx, key); got != 3600 {
					t.Errorf("chat timer after upgrade = %d, want 3600", got)
				}
				if exists, err := db.TableExists(ctx, "whatsapp_message_sender"); err != nil || !exists {
					t.Errorf("whatsapp_message_sender exists after upgrade = %v, %v", exists, err)
				}
				// The previous release still starts on the upgraded database (v2 is
				// compatible with v1), in case the bridge is rolled back.
				if err = core.Child(connectorVersionTable, connectorUpgrades()[:1], nil).Upgrade(ctx); err != nil {
					t.Errorf("the v1 connector refuses the v2 database: %v", err)
				}
			})
			t.Run("legacy tables", func(t *testing.T) {
				ctx := context.Background()
				core := openCore(t, b.name, b.uri(t))
				if _, err := core.Exec(ctx, legacySchema); err != nil {
					t.Fatalf("creating the tables the old way: %v", err)
				}
				chatKey, err := chatKeyText(key)
				if err != nil {
					t.Fatal(err)
				}
				expires := time.Now().Add(time.Hour).UnixMilli()
				if _, err = core.Exec(ctx, `INSERT INTO whatsapp_chat_timer (chat_key, receiver, seconds) VALUES ($1, $2, 604800)`,
					chatKey, key.Receiver); err != nil {
					t.Fatalf("inserting a chat timer: %v", err)
				}
				if _, err = core.Exec(ctx, `INSERT INTO whatsapp_disappearing (chat_key, receiver, message_id, expires_at)
					VALUES ($1, $2, 'MSG1', $3)`, chatKey, key.Receiver, expires); err != nil {
					t.Fatalf("inserting a deadline: %v", err)
				}
				// As before versioned migrations: the tables, but no version table.
				if exists, err := core.TableExists(ctx, connectorVersionTable); err != nil || exists {
					t.Fatalf("%s exists before the upgrade = %v, %v", connectorVersionTable, exists, err)
				}
				db, err := openConnectorDB(ctx, core.Database, nil)
				if err != nil {
					t.Fatalf("upgrading tables made by the old code: %v", err)
				}
				checkVersion(t, db)
				if got := (&disappearing{db: db}).chatTimer(ctx, key); got != 604800 {
					t.Errorf("chat timer after upgrade = %d, want 604800", got)
				}
				var msgID string
				var at int64
				if err = db.QueryRow(ctx, `SELECT message_id, expires_at FROM whatsapp_disappearing WHERE chat_key=$1`, chatKey).
					Scan(&msgID, &at); err != nil || msgID != "MSG1" || at != expires {
					t.Errorf("deadline after upgrade = %q at %d, %v; want MSG1 at %d", msgID, at, err, expires)
				}
			})
		})
	}
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

// checkVersion asserts whatsapp_version holds one row at the latest version.
func checkVersion(t *testing.T, db *dbutil.Database) {
	t.Helper()
	var rows, version int
	err := db.QueryRow(context.Background(), `SELECT COUNT(*), COALESCE(MAX(version), 0) FROM `+connectorVersionTable).Scan(&rows, &version)
	if want := len(connectorUpgrades()); err != nil || rows != 1 || version != want {
		t.Fatalf("%s: %d rows at v%d, %v; want one row at v%d", connectorVersionTable, rows, version, err, want)
	}
}
