package whatsapp

import (
	"context"
	"embed"
	"fmt"

	"go.mau.fi/util/dbutil"
)

// connectorVersionTable keeps the schema version of the connector's own tables apart
// from the core's passerelle_version and whatsmeow's whatsmeow_version, in the same
// database.
const connectorVersionTable = "whatsapp_version"

// upgradeFiles holds the connector's migrations, in dbutil's "-- vN -> vM" format.
//
//go:embed upgrades/*.sql
var upgradeFiles embed.FS

// connectorUpgrades returns the connector's upgrade table. It is built per call rather
// than kept in a package variable, so nothing can change it between uses.
func connectorUpgrades() dbutil.UpgradeTable {
	var table dbutil.UpgradeTable
	// RegisterFSPath panics on an unreadable or malformed file; the files are embedded,
	// so that is a build mistake every test run catches.
	table.RegisterFSPath(upgradeFiles, "upgrades")
	return table
}

// openConnectorDB returns a handle on the bridge's database that shares its connection
// pool but versions the connector's tables in their own table, and brings those tables
// up to date.
func openConnectorDB(ctx context.Context, db *dbutil.Database, log dbutil.DatabaseLogger) (*dbutil.Database, error) {
	child := db.Child(connectorVersionTable, connectorUpgrades(), log)
	if err := child.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("whatsapp: upgrading the connector's tables: %w", err)
	}
	return child, nil
}
