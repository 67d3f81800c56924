// Package dbtest opens throwaway databases for tests of packages built on the core's
// store.
package dbtest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/passerelle/passerelle/bridge/database"
)

// OpenSQLite opens a fresh, migrated SQLite database in the test's temp dir, closed when
// the test ends.
func OpenSQLite(tb testing.TB) *database.Database {
	tb.Helper()
	db, err := database.Open(context.Background(), "sqlite", filepath.Join(tb.TempDir(), "bridge.db"), 0, zerolog.Nop())
	if err != nil {
		tb.Fatalf("opening test database: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}
