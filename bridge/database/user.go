package database

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// GetManagementRoom returns a user's management room ID, or "".
func (db *Database) GetManagementRoom(ctx context.Context, mxid string) (string, error) {
	var room string
	err := db.QueryRow(ctx, `SELECT management_room FROM matrix_user WHERE mxid=$1`, mxid).Scan(&room)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("loading management room: %w", err)
	}
	return room, nil
}

// SetManagementRoom records a user's management room.
func (db *Database) SetManagementRoom(ctx context.Context, mxid, roomID string) error {
	defer db.memos.management.forget()
	_, err := db.Exec(ctx, `INSERT INTO matrix_user (mxid, management_room, created_at) VALUES ($1,$2,$3)
		ON CONFLICT (mxid) DO UPDATE SET management_room=excluded.management_room`, mxid, roomID, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("saving management room: %w", err)
	}
	return nil
}

// IsManagementRoom says whether a room is someone's management room, and whose.
func (db *Database) IsManagementRoom(ctx context.Context, roomID string) (string, error) {
	return db.memos.management.lookup(ctx, db, roomID, func() (string, error) { return db.loadManagementOwner(ctx, roomID) }, same[string])
}

func (db *Database) loadManagementOwner(ctx context.Context, roomID string) (string, error) {
	var mxid string
	err := db.QueryRow(ctx, `SELECT mxid FROM matrix_user WHERE management_room=$1`, roomID).Scan(&mxid)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("checking management room: %w", err)
	}
	return mxid, nil
}

// LoginRow is a stored login.
type LoginRow struct {
	Connector, LoginID, MXID, RemoteName string
	Metadata                             json.RawMessage
	State, StateMessage                  string
	CreatedAt                            time.Time
}

const loginCols = `connector, login_id, mxid, remote_name, metadata, state, state_message, created_at`

func (db *Database) queryLogins(ctx context.Context, where string, args ...any) ([]*LoginRow, error) {
	rows, err := db.Query(ctx, `SELECT `+loginCols+` FROM login `+where+` ORDER BY created_at`, args...)
	if err != nil {
		return nil, fmt.Errorf("loading logins: %w", err)
	}
	defer rows.Close()
	var out []*LoginRow
	for rows.Next() {
		var l LoginRow
		var meta string
		var created int64
		if err = rows.Scan(&l.Connector, &l.LoginID, &l.MXID, &l.RemoteName, &meta, &l.State, &l.StateMessage, &created); err != nil {
			return nil, fmt.Errorf("reading logins: %w", err)
		}
		l.Metadata = json.RawMessage(meta)
		l.CreatedAt = time.UnixMilli(created)
		out = append(out, &l)
	}
	return out, rows.Err()
}

// AllLogins lists every login.
func (db *Database) AllLogins(ctx context.Context) ([]*LoginRow, error) {
	return db.queryLogins(ctx, ``)
}

// LoginsOfUser lists a Matrix user's logins.
func (db *Database) LoginsOfUser(ctx context.Context, mxid string) ([]*LoginRow, error) {
	return db.memos.userLogins.lookup(ctx, db, mxid, func() ([]*LoginRow, error) {
		return db.queryLogins(ctx, `WHERE mxid=$1`, mxid)
	}, cloneLogins)
}

// LoginsOfConnector lists a connector's logins.
func (db *Database) LoginsOfConnector(ctx context.Context, connector string) ([]*LoginRow, error) {
	return db.queryLogins(ctx, `WHERE connector=$1`, connector)
}

// GetLogin returns one login, or nil.
func (db *Database) GetLogin(ctx context.Context, connector, loginID string) (*LoginRow, error) {
	logins, err := db.queryLogins(ctx, `WHERE connector=$1 AND login_id=$2`, connector, loginID)
	if err != nil || len(logins) == 0 {
		return nil, err
	}
	return logins[0], nil
}

// UpsertLogin saves a login.
func (db *Database) UpsertLogin(ctx context.Context, l *LoginRow) error {
	defer db.forgetLogins()
	meta := string(l.Metadata)
	if meta == "" {
		meta = "{}"
	}
	_, err := db.Exec(ctx, `INSERT INTO login (`+loginCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
		ON CONFLICT (connector, login_id) DO UPDATE SET mxid=excluded.mxid, remote_name=excluded.remote_name, metadata=excluded.metadata`,
		l.Connector, l.LoginID, l.MXID, l.RemoteName, meta, l.State, l.StateMessage, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("saving login: %w", err)
	}
	return nil
}

// SetLoginMetadata updates a login's connector metadata.
func (db *Database) SetLoginMetadata(ctx context.Context, connector, loginID string, meta json.RawMessage) error {
	defer db.forgetLogins()
	_, err := db.Exec(ctx, `UPDATE login SET metadata=$3 WHERE connector=$1 AND login_id=$2`, connector, loginID, string(meta))
	if err != nil {
		return fmt.Errorf("saving login metadata: %w", err)
	}
	return nil
}

// SetLoginState records a login's connection state.
func (db *Database) SetLoginState(ctx context.Context, connector, loginID, state, message string) error {
	defer db.forgetLogins()
	_, err := db.Exec(ctx, `UPDATE login SET state=$3, state_message=$4 WHERE connector=$1 AND login_id=$2`, connector, loginID, state, message)
	if err != nil {
		return fmt.Errorf("saving login state: %w", err)
	}
	return nil
}

// DeleteLogin forgets a login, and clears it as relay wherever it was one.
func (db *Database) DeleteLogin(ctx context.Context, connector, loginID string) error {
	defer db.forgetLogins()
	defer db.forgetRooms()
	return db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := db.Exec(ctx, `UPDATE room SET relay_login='' WHERE connector=$1 AND relay_login=$2`, connector, loginID); err != nil {
			return fmt.Errorf("clearing relay of deleted login: %w", err)
		}
		if _, err := db.Exec(ctx, `DELETE FROM login WHERE connector=$1 AND login_id=$2`, connector, loginID); err != nil {
			return fmt.Errorf("deleting login: %w", err)
		}
		return nil
	})
}
