package bridge

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

// TestOpenTables: a plugin's tables are created and versioned in "<name>_version" beside
// the core's, and a failing migration is reported under the plugin's name.
func TestOpenTables(t *testing.T) {
	ctx := context.Background()
	core := dbtest.OpenSQLite(t)
	files := fstest.MapFS{
		"upgrades/01-initial.sql": {Data: []byte("-- v0 -> v1: A demo table\nCREATE TABLE demo_item (id INTEGER PRIMARY KEY);\n")},
	}
	db, err := OpenTables(ctx, core.Database, "demo", files, nil)
	if err != nil {
		t.Fatalf("OpenTables: %v", err)
	}
	dbtest.CheckTables(t, db, "demo_item")
	dbtest.CheckVersion(t, db, "demo_version", TablesVersion(files))
	dbtest.CheckVersion(t, core.Database, "passerelle_version", len(core.UpgradeTable))

	files["upgrades/02-broken.sql"] = &fstest.MapFile{Data: []byte("-- v1 -> v2: A mistake\nCREATE TABLE demo_item (id INTEGER PRIMARY KEY);\n")}
	if _, err = OpenTables(ctx, core.Database, "demo", files, nil); err == nil || !strings.HasPrefix(err.Error(), "demo: upgrading tables: ") {
		t.Errorf("a failing migration = %v, want an error under the plugin's name", err)
	}
}
