package loopback

import (
	"context"
	"testing"

	"go.mau.fi/util/dbutil"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

// legacySchema is what Init ran at every start before the connector's table was
// versioned, kept verbatim: it builds the database an upgraded bridge finds.
const legacySchema = `CREATE TABLE IF NOT EXISTS loopback_cursor (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL)`

// TestMigrations checks the connector's table on both backends: a new database gets it
// and a version row, and one whose table the old unversioned code made upgrades in
// place and keeps its cursor.
func TestMigrations(t *testing.T) {
	t.Run("fresh", func(t *testing.T) {
		dbtest.EachBackend(t, func(t *testing.T, core *database.Database) {
			ctx := context.Background()
			db := openTables(t, core)
			dbtest.CheckTables(t, db, "loopback_cursor")
			c := &Connector{db: db}
			if seq, err := c.cursor(ctx); err != nil || seq != 0 {
				t.Errorf("cursor of a new database = %d, %v; want 0", seq, err)
			}
			if err := c.saveCursor(ctx, 7); err != nil {
				t.Fatalf("saveCursor: %v", err)
			}
			// A restart finds the schema current and the cursor kept.
			if seq, err := (&Connector{db: openTables(t, core)}).cursor(ctx); err != nil || seq != 7 {
				t.Errorf("cursor after restart = %d, %v; want 7", seq, err)
			}
		})
	})
	t.Run("legacy table", func(t *testing.T) {
		dbtest.EachBackend(t, func(t *testing.T, core *database.Database) {
			dbtest.Unversioned(t, core.Database, "loopback_version", legacySchema,
				dbtest.Stmt{Query: `INSERT INTO loopback_cursor (id, seq) VALUES (1, 42)`})
			if seq, err := (&Connector{db: openTables(t, core)}).cursor(context.Background()); err != nil || seq != 42 {
				t.Errorf("cursor after upgrade = %d, %v; want 42", seq, err)
			}
		})
	})
}

// openTables opens the connector's table as Init does and checks loopback_version holds
// one row at the latest version.
func openTables(t *testing.T, core *database.Database) *dbutil.Database {
	t.Helper()
	db, err := bridge.OpenTables(context.Background(), core.Database, "loopback", upgradeFiles, nil)
	if err != nil {
		t.Fatalf("opening the connector's table: %v", err)
	}
	dbtest.CheckVersion(t, db, "loopback_version", bridge.TablesVersion(upgradeFiles))
	return db
}
