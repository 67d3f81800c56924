package bridge

import (
	"context"
	"fmt"
	"io/fs"

	"go.mau.fi/util/dbutil"
)

// tablesDir is the directory of a connector's or plugin's files that holds its
// migrations.
const tablesDir = "upgrades"

// OpenTables gives a connector or plugin its own tables in the bridge's database (the
// one Host.Database and PluginHost.Database return) and brings them up to date. name is
// the prefix of those tables; their schema version is kept in "<name>_version", apart
// from the core's passerelle_version, so each side upgrades on its own. files holds the
// migrations in its "upgrades" directory, in dbutil's "-- vN -> vM" format, usually an
// embed.FS:
//
//	//go:embed upgrades/*.sql
//	var upgradeFiles embed.FS
//
// The handle returned shares the bridge database's connection pool; a nil log logs
// through the bridge database's logger.
//
// A malformed or unreadable migration file panics (dbutil's RegisterFSPath): the files
// are part of the build, so that is a mistake every test run of the caller catches.
func OpenTables(ctx context.Context, db *dbutil.Database, name string, files fs.FS, log dbutil.DatabaseLogger) (*dbutil.Database, error) {
	child := db.Child(name+"_version", upgradeTable(files), log)
	if err := child.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("%s: upgrading tables: %w", name, err)
	}
	return child, nil
}

// TablesVersion is the schema version OpenTables brings files' tables to, for tests
// that check the version table.
func TablesVersion(files fs.FS) int {
	return len(upgradeTable(files))
}

// upgradeTable reads files' migrations. The table is built per call rather than kept,
// so nothing can change it between uses.
func upgradeTable(files fs.FS) dbutil.UpgradeTable {
	var table dbutil.UpgradeTable
	table.RegisterFSPath(readFS{files}, tablesDir)
	return table
}

// readFS gives any fs.FS the ReadDir and ReadFile methods RegisterFSPath asks for
// (embed.FS has them; a plain fs.FS need not).
type readFS struct{ fs.FS }

func (f readFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(f.FS, name) }
func (f readFS) ReadFile(name string) ([]byte, error)       { return fs.ReadFile(f.FS, name) }
