package loopback

import (
	"context"
	"embed"
	"fmt"

	"go.mau.fi/util/dbutil"
)

// versionTable keeps the schema version of the connector's tables apart from the
// core's passerelle_version, in the same database.
const versionTable = "loopback_version"

// upgradeFiles holds the connector's migrations, in dbutil's "-- vN -> vM" format.
//
//go:embed upgrades/*.sql
var upgradeFiles embed.FS

// upgrades returns the connector's upgrade table. It is built per call rather than kept
// in a package variable, so nothing can change it between uses.
func upgrades() dbutil.UpgradeTable {
	var table dbutil.UpgradeTable
	// RegisterFSPath panics on an unreadable or malformed file; the files are embedded,
	// so that is a build mistake every test run catches.
	table.RegisterFSPath(upgradeFiles, "upgrades")
	return table
}

// openDB returns a handle on the bridge's database that shares its connection pool but
// versions the connector's tables in their own table, and brings those tables up to
// date.
func openDB(ctx context.Context, db *dbutil.Database, log dbutil.DatabaseLogger) (*dbutil.Database, error) {
	child := db.Child(versionTable, upgrades(), log)
	if err := child.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("loopback: upgrading tables: %w", err)
	}
	return child, nil
}
