package loopback

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/tests/harness"
)

// legacySchema is what Init ran at every start before the connector's table was
// versioned, kept verbatim: it builds the database an upgraded bridge finds.
const legacySchema = `CREATE TABLE IF NOT EXISTS loopback_cursor (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL)`

// TestMigrations checks the connector's table on both backends: a new database gets it
// and a version row, and one whose table the old unversioned code made upgrades in
// place and keeps its cursor.
func TestMigrations(t *testing.T) {
	backends := []struct {
		name string
		uri  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "bridge.db") }},
		{"postgres", freshPostgres},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Run("fresh", func(t *testing.T) {
				ctx := context.Background()
				core := openCore(t, b.name, b.uri(t))
				db, err := openDB(ctx, core.Database, nil)
				if err != nil {
					t.Fatalf("openDB: %v", err)
				}
				if exists, err := db.TableExists(ctx, "loopback_cursor"); err != nil || !exists {
					t.Errorf("table loopback_cursor exists = %v, %v", exists, err)
				}
				checkVersion(t, db)
				c := &Connector{db: db}
				if seq, err := c.cursor(ctx); err != nil || seq != 0 {
					t.Errorf("cursor of a new database = %d, %v; want 0", seq, err)
				}
				if err = c.saveCursor(ctx, 7); err != nil {
					t.Fatalf("saveCursor: %v", err)
				}
				// A restart finds the schema current and the cursor kept.
				if db, err = openDB(ctx, core.Database, nil); err != nil {
					t.Fatalf("openDB again: %v", err)
				}
				checkVersion(t, db)
				if seq, err := (&Connector{db: db}).cursor(ctx); err != nil || seq != 7 {
					t.Errorf("cursor after restart = %d, %v; want 7", seq, err)
				}
			})
			t.Run("legacy table", func(t *testing.T) {
				ctx := context.Background()
				core := openCore(t, b.name, b.uri(t))
				if _, err := core.Exec(ctx, legacySchema); err != nil {
					t.Fatalf("creating the table the old way: %v", err)
				}
				if _, err := core.Exec(ctx, `INSERT INTO loopback_cursor (id, seq) VALUES (1, 42)`); err != nil {
					t.Fatalf("inserting the cursor the old way: %v", err)
				}
				// As before versioned migrations: the table, but no version table.
				if exists, err := core.TableExists(ctx, versionTable); err != nil || exists {
					t.Fatalf("%s exists before the upgrade = %v, %v", versionTable, exists, err)
				}
				db, err := openDB(ctx, core.Database, nil)
				if err != nil {
					t.Fatalf("upgrading the table made by the old code: %v", err)
				}
				checkVersion(t, db)
				if seq, err := (&Connector{db: db}).cursor(ctx); err != nil || seq != 42 {
					t.Errorf("cursor after upgrade = %d, %v; want 42", seq, err)
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

// checkVersion asserts loopback_version holds one row at the latest version.
func checkVersion(t *testing.T, db *dbutil.Database) {
	t.Helper()
	var rows, version int
	err := db.QueryRow(context.Background(), `SELECT COUNT(*), COALESCE(MAX(version), 0) FROM `+versionTable).Scan(&rows, &version)
	if want := len(upgrades()); err != nil || rows != 1 || version != want {
		t.Fatalf("%s: %d rows at v%d, %v; want one row at v%d", versionTable, rows, version, err, want)
	}
}
