package whatsapp

import (
	"context"
	"io/fs"
	"testing"
	"testing/fstest"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
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
	key := bridge.PortalKey{Connector: connectorName, ChatID: "33612345678@s.whatsapp.net", Receiver: "33600000000"}
	t.Run("fresh", func(t *testing.T) {
		dbtest.EachBackend(t, func(t *testing.T, core *database.Database) {
			ctx := context.Background()
			db := openTables(t, core)
			dbtest.CheckTables(t, db, "whatsapp_disappearing", "whatsapp_chat_timer", "whatsapp_message_sender")
			if err := (&disappearing{db: db}).setChatTimer(ctx, key, 86400); err != nil {
				t.Fatalf("setChatTimer: %v", err)
			}
			// A restart finds the schema current and the timer kept.
			if got := (&disappearing{db: openTables(t, core)}).chatTimer(ctx, key); got != 86400 {
				t.Errorf("chat timer after restart = %d, want 86400", got)
			}
		})
	})
	t.Run("from v1", func(t *testing.T) {
		dbtest.EachBackend(t, func(t *testing.T, core *database.Database) {
			// A database the first versioned release made: only 01-initial ran.
			ctx := context.Background()
			v1Files := firstRelease(t)
			v1, err := bridge.OpenTables(ctx, core.Database, connectorName, v1Files, nil)
			if err != nil {
				t.Fatalf("upgrading to v1: %v", err)
			}
			dbtest.CheckVersion(t, v1, "whatsapp_version", 1)
			if err = (&disappearing{db: v1}).setChatTimer(ctx, key, 3600); err != nil {
				t.Fatalf("setChatTimer at v1: %v", err)
			}
			db := openTables(t, core)
			if got := (&disappearing{db: db}).chatTimer(ctx, key); got != 3600 {
				t.Errorf("chat timer after upgrade = %d, want 3600", got)
			}
			dbtest.CheckTables(t, db, "whatsapp_message_sender")
			// The previous release still starts on the upgraded database (v2 is
			// compatible with v1), in case the bridge is rolled back.
			if _, err = bridge.OpenTables(ctx, core.Database, connectorName, v1Files, nil); err != nil {
				t.Errorf("the v1 connector refuses the v2 database: %v", err)
			}
		})
	})
	t.Run("legacy tables", func(t *testing.T) {
		dbtest.EachBackend(t, func(t *testing.T, core *database.Database) {
			ctx := context.Background()
			chatKey, err := chatKeyText(key)
			if err != nil {
				t.Fatal(err)
			}
			expires := time.Now().Add(time.Hour).UnixMilli()
			dbtest.Unversioned(t, core.Database, "whatsapp_version", legacySchema,
				dbtest.Stmt{Query: `INSERT INTO whatsapp_chat_timer (chat_key, receiver, seconds) VALUES ($1, $2, 604800)`,
					Args: []any{chatKey, key.Receiver}},
				dbtest.Stmt{Query: `INSERT INTO whatsapp_disappearing (chat_key, receiver, message_id, expires_at)
					VALUES ($1, $2, 'MSG1', $3)`, Args: []any{chatKey, key.Receiver, expires}})
			db := openTables(t, core)
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

// openTables opens the connector's tables as Init does and checks whatsapp_version
// holds one row at the latest version.
func openTables(t *testing.T, core *database.Database) *dbutil.Database {
	t.Helper()
	db, err := bridge.OpenTables(context.Background(), core.Database, connectorName, upgradeFiles, nil)
	if err != nil {
		t.Fatalf("opening the connector's tables: %v", err)
	}
	dbtest.CheckVersion(t, db, "whatsapp_version", bridge.TablesVersion(upgradeFiles))
	return db
}

// firstRelease is the migrations the first versioned release shipped: 01-initial only.
func firstRelease(t *testing.T) fs.FS {
	t.Helper()
	const initial = "upgrades/01-initial.sql"
	data, err := fs.ReadFile(upgradeFiles, initial)
	if err != nil {
		t.Fatal(err)
	}
	return fstest.MapFS{initial: {Data: data}}
}
