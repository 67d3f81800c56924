// Package database is the core's store: schema, versioned migrations and queries, on
// SQLite (the embedded default) or PostgreSQL.
package database

import (
	"context"
	"embed"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	// The SQLite driver: mattn/go-sqlite3 through dbutil's "sqlite3-fk-wal"
	// registration, because mautrix's state store and whatsmeow's sqlstore are written
	// and tested against it, and it turns foreign keys and WAL on for every connection.
	_ "go.mau.fi/util/dbutil/litestream"
	// PostgreSQL, as the design asks.
	_ "github.com/lib/pq"
)

//go:embed upgrades/*.sql
var upgrades embed.FS

// Database is the core's handle on its tables.
type Database struct {
	*dbutil.Database
	// Stats counts the statements run, for the diagnostics listener.
	Stats *QueryStats
	// memos remember hot-path lookups between writes.
	memos memos
}

// Open connects to the database ("sqlite" with a file path, or "postgres" with a URI)
// and runs pending migrations. A new SQLite file is created readable by its owner only.
func Open(ctx context.Context, dbType, uri string, maxOpen int, log zerolog.Logger) (*Database, error) {
	var driver string
	switch dbType {
	case "sqlite":
		driver = "sqlite3-fk-wal"
		path := strings.TrimPrefix(uri, "file:")
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		if err := createPrivateFile(path); err != nil {
			return nil, err
		}
		uri = sqliteURI(path)
		// One writer at a time is what SQLite allows; immediate transactions plus a
		// busy timeout make concurrent writers wait instead of failing.
		if maxOpen <= 0 {
			maxOpen = 4
		}
	case "postgres":
		driver = "postgres"
		if maxOpen <= 0 {
			maxOpen = 10
		}
	default:
		return nil, fmt.Errorf("unknown database type %q", dbType)
	}
	stats := NewQueryStats()
	sqlDB, err := openCached(driver, uri, stats)
	if err != nil {
		return nil, fmt.Errorf("opening %s database: %w", dbType, err)
	}
	raw, err := dbutil.NewWithDB(sqlDB, driver)
	if err != nil {
		return nil, fmt.Errorf("opening %s database: %w", dbType, err)
	}
	raw.RawDB.SetMaxOpenConns(maxOpen)
	raw.RawDB.SetMaxIdleConns(maxOpen)
	raw.Owner = "passerelle"
	raw.Log = dbutil.ZeroLogger(log.With().Str("db_section", "core").Logger())
	raw.VersionTable = "passerelle_version"
	raw.UpgradeTable.RegisterFSPath(upgrades, "upgrades")
	if err = raw.RawDB.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("connecting to %s database: %w", dbType, err)
	}
	if err = raw.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("upgrading database schema: %w", err)
	}
	return &Database{Database: raw, Stats: stats}, nil
}

func sqliteURI(path string) string {
	q := url.Values{}
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

// createPrivateFile makes sure a new database file starts with mode 0600, so the
// sessions and secrets it will hold are never world-readable. SQLite gives its -wal and
// -shm files the main file's mode.
func createPrivateFile(path string) error {
	if path == "" || path == ":memory:" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("creating database file: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("creating database file: %w", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("checking database file: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		if err = os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("restricting database file permissions: %w", err)
		}
	}
	return nil
}
