// Package dbtest opens throwaway databases for tests of packages built on the core's
// store, on every backend it supports, and checks what versioned migrations left.
package dbtest

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

// Backend is a kind of database the core's store runs on.
type Backend struct {
	// Name is the dialect database.Open takes, and the subtest's name.
	Name string
	// URI returns a connection string for a new, empty database of this kind, removed
	// when tb ends.
	URI func(tb testing.TB) string
}

// Backends lists every kind of database the store supports: SQLite in the test's temp
// dir and PostgreSQL (see FreshPostgres). It is built per call, so no test can change
// what another runs on.
func Backends() []Backend {
	return []Backend{
		{Name: "sqlite", URI: func(tb testing.TB) string { return filepath.Join(tb.TempDir(), "bridge.db") }},
		{Name: "postgres", URI: FreshPostgres},
	}
}

// EachBackend runs fn as a subtest per backend, each with a fresh, migrated core
// database.
func EachBackend(t *testing.T, fn func(t *testing.T, db *database.Database)) {
	t.Helper()
	for _, b := range Backends() {
		t.Run(b.Name, func(t *testing.T) {
			fn(t, Open(t, b.Name, b.URI(t)))
		})
	}
}

// Open opens and migrates the core database at uri, closed when tb ends.
func Open(tb testing.TB, backend, uri string) *database.Database {
	tb.Helper()
	db, err := database.Open(context.Background(), backend, uri, 0, zerolog.Nop())
	if err != nil {
		tb.Fatalf("opening the %s test database: %v", backend, err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// OpenSQLite opens a fresh, migrated SQLite database in the test's temp dir, closed when
// the test ends.
func OpenSQLite(tb testing.TB) *database.Database {
	tb.Helper()
	return Open(tb, "sqlite", filepath.Join(tb.TempDir(), "bridge.db"))
}

// FreshPostgres creates a database for one test on the server CI provides (or the one
// $PASSERELLE_TEST_POSTGRES names) and drops it when tb ends. An unreachable server
// fails the test: the PostgreSQL path must not go untested silently.
func FreshPostgres(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	uri, drop, err := harness.NewPostgresDB(ctx)
	if err != nil {
		tb.Fatalf("PostgreSQL needed (start it, or point PASSERELLE_TEST_POSTGRES at a server where the user may CREATE DATABASE): %v", err)
	}
	tb.Cleanup(drop)
	return uri
}

// CheckVersion fails the test unless versionTable holds exactly one row, at version
// want: what dbutil's Upgrade leaves after bringing tables up to date.
func CheckVersion(tb testing.TB, db *dbutil.Database, versionTable string, want int) {
	tb.Helper()
	var rows, version int
	err := db.QueryRow(context.Background(), `SELECT COUNT(*), COALESCE(MAX(version), 0) FROM `+versionTable).Scan(&rows, &version)
	if err != nil || rows != 1 || version != want {
		tb.Fatalf("%s: %d rows at v%d, %v; want one row at v%d", versionTable, rows, version, err, want)
	}
}

// CheckTables fails the test unless every table named exists in db.
func CheckTables(tb testing.TB, db *dbutil.Database, tables ...string) {
	tb.Helper()
	for _, table := range tables {
		if exists, err := db.TableExists(context.Background(), table); err != nil || !exists {
			tb.Errorf("table %s exists = %v, %v", table, exists, err)
		}
	}
}

// Stmt is one SQL statement with its arguments.
type Stmt struct {
	Query string
	Args  []any
}

// Unversioned builds in db what a release before versioned migrations left: schema run
// as it ran at every start (CREATE TABLE IF NOT EXISTS), then rows, and no version
// table yet. Upgrading such a database in place must keep the rows.
func Unversioned(tb testing.TB, db *dbutil.Database, versionTable, schema string, rows ...Stmt) {
	tb.Helper()
	ctx := context.Background()
	if _, err := db.Exec(ctx, schema); err != nil {
		tb.Fatalf("creating the tables the old way: %v", err)
	}
	for _, r := range rows {
		if _, err := db.Exec(ctx, r.Query, r.Args...); err != nil {
			tb.Fatalf("inserting a row the old way: %v", err)
		}
	}
	if exists, err := db.TableExists(ctx, versionTable); err != nil || exists {
		tb.Fatalf("%s exists before the upgrade = %v, %v", versionTable, exists, err)
	}
}
