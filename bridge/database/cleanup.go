package database

import (
	"context"
	"fmt"
	"time"
)

// StampGhosts gives ghosts made before created_at was kept the time now, so the
// cleanup's clock starts for them at the upgrade.
func (db *Database) StampGhosts(ctx context.Context, now time.Time) error {
	if _, err := db.Exec(ctx, `UPDATE ghost SET created_at=$1 WHERE created_at=0`, now.UnixMilli()); err != nil {
		return fmt.Errorf("stamping ghosts: %w", err)
	}
	return nil
}

// UnusedGhosts lists up to limit ghosts made before the cut-off that nothing needs:
// no bridged message of theirs since the cut-off, and the bridge's state store has
// them in no room, joined or invited.
func (db *Database) UnusedGhosts(ctx context.Context, before time.Time, limit int) ([]GhostRow, error) {
	// Anti-joins, each table read once per pass: neither has an index by user.
	rows, err := db.Query(ctx, `SELECT g.connector, g.remote_id, g.mxid FROM ghost g
		LEFT JOIN (SELECT DISTINCT user_id FROM mx_user_profile WHERE membership IN ('join', 'invite')) p ON p.user_id = g.mxid
		LEFT JOIN (SELECT DISTINCT sender_mxid FROM message WHERE created_at >= $1) m ON m.sender_mxid = g.mxid
		WHERE g.created_at > 0 AND g.created_at < $1 AND p.user_id IS NULL AND m.sender_mxid IS NULL
		LIMIT $2`, before.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("listing unused ghosts: %w", err)
	}
	defer rows.Close()
	var out []GhostRow
	for rows.Next() {
		var g GhostRow
		if err = rows.Scan(&g.Connector, &g.RemoteID, &g.MXID); err != nil {
			return nil, fmt.Errorf("reading unused ghosts: %w", err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// DeleteGhost forgets a ghost (its Matrix account stays registered, and is used again
// should the remote user come back).
func (db *Database) DeleteGhost(ctx context.Context, connector, remoteID string) error {
	if _, err := db.Exec(ctx, `DELETE FROM ghost WHERE connector=$1 AND remote_id=$2`, connector, remoteID); err != nil {
		return fmt.Errorf("deleting ghost: %w", err)
	}
	return nil
}

// QuietDMRooms lists up to limit direct-chat portal rooms linked before the cut-off
// with no bridged message since.
func (db *Database) QuietDMRooms(ctx context.Context, before time.Time, limit int) ([]*RoomRow, error) {
	return scanRooms(db.Query(ctx, `SELECT r.room_id, r.connector, r.chat_id, r.receiver, r.kind, r.relay_login, r.relay_options, r.created_by FROM room r
		JOIN portal p ON p.connector = r.connector AND p.chat_id = r.chat_id AND p.receiver = r.receiver
		WHERE p.is_dm AND r.kind = 'portal' AND r.created_at < $1
		AND NOT EXISTS (SELECT 1 FROM message m WHERE m.room_id = r.room_id AND m.created_at >= $1)
		LIMIT $2`, before.UnixMilli(), limit))
}
