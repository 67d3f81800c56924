package whatsapp

import (
	"context"
	"fmt"

	"github.com/lib/pq"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/store/sqlstore/upgrades"
	waLog "go.mau.fi/whatsmeow/util/log"
)

// whatsmeowVersionTable keeps whatsmeow's schema version apart from the core's
// passerelle_version, in the same database.
const whatsmeowVersionTable = "whatsmeow_version"

// openContainer puts whatsmeow's sqlstore on the bridge's own database (SQLite or
// PostgreSQL) and brings its tables up to date: no second database to set up.
func openContainer(ctx context.Context, db *dbutil.Database, log zerolog.Logger) (*sqlstore.Container, error) {
	if db == nil {
		return nil, fmt.Errorf("whatsapp: no database")
	}
	switch db.Dialect {
	case dbutil.Postgres:
		// whatsmeow exposes its PostgreSQL array handling only as this package variable
		// (its own docs say to set it to pq.Array). Setting a library's package variable
		// is acceptable here: it happens once at connector init, always to the same
		// value, and the bridge uses lib/pq as its only PostgreSQL driver.
		sqlstore.PostgresArrayWrapper = pq.Array
	case dbutil.SQLite:
		// Upgrade checks that foreign keys are on; the core opens SQLite with
		// sqlite3-fk-wal, which enables them.
	default:
		return nil, fmt.Errorf("whatsapp: unsupported database dialect %q", db.Dialect.String())
	}
	// A child shares the connection pool but has whatsmeow's own upgrade table and
	// version table.
	child := db.Child(whatsmeowVersionTable, upgrades.Table, dbutil.ZeroLogger(log.With().Str("db_section", "whatsmeow").Logger()))
	container := sqlstore.NewWithWrappedDB(child, waLog.Zerolog(log.With().Str("component", "whatsmeow_store").Logger()))
	if err := container.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("whatsapp: upgrading session store: %w", err)
	}
	return container, nil
}
