package database

import (
	"context"
	"fmt"
	"time"
)

// LoginFlowRow marks a user's login flow in progress (see the login_flow table).
type LoginFlowRow struct {
	MXID, RoomID, Connector string
	// Secret is set while the flow waits for a secret answer (a password).
	Secret bool
	// Notified is set once the user was told the flow stopped.
	Notified bool
}

// UpsertLoginFlow records (or updates) a user's running login flow.
func (db *Database) UpsertLoginFlow(ctx context.Context, f *LoginFlowRow) error {
	_, err := db.Exec(ctx, `INSERT INTO login_flow (mxid, room_id, connector, secret, notified, started_at) VALUES ($1,$2,$3,$4,$5,$6)
		ON CONFLICT (mxid) DO UPDATE SET room_id=excluded.room_id, connector=excluded.connector, secret=excluded.secret, notified=excluded.notified`,
		f.MXID, f.RoomID, f.Connector, f.Secret, f.Notified, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("recording login flow: %w", err)
	}
	return nil
}

// LoginFlow returns a user's login flow marker, or nil.
func (db *Database) LoginFlow(ctx context.Context, mxid string) (*LoginFlowRow, error) {
	flows, err := db.loginFlows(ctx, `WHERE mxid=$1`, mxid)
	if err != nil || len(flows) == 0 {
		return nil, err
	}
	return flows[0], nil
}

// AllLoginFlows lists every login flow marker.
func (db *Database) AllLoginFlows(ctx context.Context) ([]*LoginFlowRow, error) {
	return db.loginFlows(ctx, ``)
}

func (db *Database) loginFlows(ctx context.Context, where string, args ...any) ([]*LoginFlowRow, error) {
	rows, err := db.Query(ctx, `SELECT mxid, room_id, connector, secret, notified FROM login_flow `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("loading login flows: %w", err)
	}
	defer rows.Close()
	var out []*LoginFlowRow
	for rows.Next() {
		var f LoginFlowRow
		if err = rows.Scan(&f.MXID, &f.RoomID, &f.Connector, &f.Secret, &f.Notified); err != nil {
			return nil, fmt.Errorf("loading login flows: %w", err)
		}
		out = append(out, &f)
	}
	return out, rows.Err()
}

// DeleteLoginFlow forgets a user's login flow marker.
func (db *Database) DeleteLoginFlow(ctx context.Context, mxid string) error {
	if _, err := db.Exec(ctx, `DELETE FROM login_flow WHERE mxid=$1`, mxid); err != nil {
		return fmt.Errorf("forgetting login flow: %w", err)
	}
	return nil
}
