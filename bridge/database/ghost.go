package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// GhostRow is a remote user's Matrix puppet.
type GhostRow struct {
	Connector, RemoteID, MXID string
	Name, AvatarURL           string
	// Account and RealName are the remote identity details the display name may show.
	Account, RealName string
	Registered        bool
}

// GetGhost returns a ghost by remote ID, or nil.
func (db *Database) GetGhost(ctx context.Context, connector, remoteID string) (*GhostRow, error) {
	var g GhostRow
	err := db.QueryRow(ctx, `SELECT connector, remote_id, mxid, name, avatar_url, account, real_name, registered FROM ghost WHERE connector=$1 AND remote_id=$2`,
		connector, remoteID).Scan(&g.Connector, &g.RemoteID, &g.MXID, &g.Name, &g.AvatarURL, &g.Account, &g.RealName, &g.Registered)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("loading ghost: %w", err)
	}
	return &g, nil
}

// UpsertGhost saves a ghost.
func (db *Database) UpsertGhost(ctx context.Context, g *GhostRow) error {
	_, err := db.Exec(ctx, `INSERT INTO ghost (connector, remote_id, mxid, name, avatar_url, account, real_name, registered, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
		ON CONFLICT (connector, remote_id) DO UPDATE SET mxid=excluded.mxid, name=excluded.name, avatar_url=excluded.avatar_url,
		account=excluded.account, real_name=excluded.real_name, registered=excluded.registered`,
		g.Connector, g.RemoteID, g.MXID, g.Name, g.AvatarURL, g.Account, g.RealName, g.Registered, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("saving ghost: %w", err)
	}
	return nil
}
