package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PortalRow is a remote chat the bridge knows.
type PortalRow struct {
	Connector, ChatID, Receiver string
	Name, Topic, AvatarURL      string
	IsDM                        bool
	OtherUser                   string
}

// RoomKind is how a Matrix room is linked to a remote chat.
type RoomKind string

const (
	// RoomPortal is created and administered by the bridge.
	RoomPortal RoomKind = "portal"
	// RoomPlumbed is an existing Matrix room linked by someone with power in it.
	RoomPlumbed RoomKind = "plumbed"
)

// RoomRow is one Matrix room linked to a remote chat.
type RoomRow struct {
	RoomID                      string
	Connector, ChatID, Receiver string
	Kind                        RoomKind
	RelayLogin                  string
	// RelayOptions is the relay policy's JSON for this room ("" for the defaults).
	RelayOptions string
	CreatedBy    string
	// PendingWatch (written by InsertRoom only) is the new portal's JSON while policy
	// connectors have yet to be told about it.
	PendingWatch string
}

const portalCols = `connector, chat_id, receiver, name, topic, avatar_url, is_dm, other_user`

func scanPortal(row interface{ Scan(...any) error }) (*PortalRow, error) {
	var p PortalRow
	err := row.Scan(&p.Connector, &p.ChatID, &p.Receiver, &p.Name, &p.Topic, &p.AvatarURL, &p.IsDM, &p.OtherUser)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return &p, err
}

// GetPortal returns the chat's row, or nil.
func (db *Database) GetPortal(ctx context.Context, connector, chatID, receiver string) (*PortalRow, error) {
	p, err := scanPortal(db.QueryRow(ctx, `SELECT `+portalCols+` FROM portal WHERE connector=$1 AND chat_id=$2 AND receiver=$3`, connector, chatID, receiver))
	if err != nil {
		return nil, fmt.Errorf("loading portal: %w", err)
	}
	return p, nil
}

// UpsertPortal stores a chat's metadata.
func (db *Database) UpsertPortal(ctx context.Context, p *PortalRow) error {
	_, err := db.Exec(ctx, `INSERT INTO portal (`+portalCols+`, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
		ON CONFLICT (connector, chat_id, receiver) DO UPDATE SET name=excluded.name, topic=excluded.topic,
		avatar_url=excluded.avatar_url, is_dm=excluded.is_dm, other_user=excluded.other_user`,
		p.Connector, p.ChatID, p.Receiver, p.Name, p.Topic, p.AvatarURL, p.IsDM, p.OtherUser, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("saving portal: %w", err)
	}
	return nil
}

// DeletePortalIfUnlinked removes a chat with no Matrix room left.
func (db *Database) DeletePortalIfUnlinked(ctx context.Context, connector, chatID, receiver string) error {
	_, err := db.Exec(ctx, `DELETE FROM portal WHERE connector=$1 AND chat_id=$2 AND receiver=$3
		AND NOT EXISTS (SELECT 1 FROM room WHERE room.connector=portal.connector AND room.chat_id=portal.chat_id AND room.receiver=portal.receiver)`,
		connector, chatID, receiver)
	if err != nil {
		return fmt.Errorf("deleting unlinked portal: %w", err)
	}
	return nil
}

const roomCols = `room_id, connector, chat_id, receiver, kind, relay_login, relay_options, created_by`

func scanRooms(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close() error
}, err error) ([]*RoomRow, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*RoomRow
	for rows.Next() {
		var r RoomRow
		if err = rows.Scan(&r.RoomID, &r.Connector, &r.ChatID, &r.Receiver, &r.Kind, &r.RelayLogin, &r.RelayOptions, &r.CreatedBy); err != nil {
			return nil, err
		}
		out = append(out, &r)
	}
	return out, rows.Err()
}

// GetRoom returns the link of a Matrix room, or nil if the room is not bridged.
func (db *Database) GetRoom(ctx context.Context, roomID string) (*RoomRow, error) {
	return db.memos.room.lookup(ctx, db, roomID, func() (*RoomRow, error) { return db.loadRoom(ctx, roomID) }, cloneRoom)
}

func (db *Database) loadRoom(ctx context.Context, roomID string) (*RoomRow, error) {
	rooms, err := scanRooms(db.Query(ctx, `SELECT `+roomCols+` FROM room WHERE room_id=$1`, roomID))
	if err != nil {
		return nil, fmt.Errorf("loading room link: %w", err)
	}
	if len(rooms) == 0 {
		return nil, nil
	}
	return rooms[0], nil
}

// RoomsForChat lists every Matrix room linked to a chat, the portal first.
func (db *Database) RoomsForChat(ctx context.Context, connector, chatID, receiver string) ([]*RoomRow, error) {
	return db.memos.chatRooms.lookup(ctx, db, [3]string{connector, chatID, receiver}, func() ([]*RoomRow, error) {
		return db.loadRoomsForChat(ctx, connector, chatID, receiver)
	}, cloneRooms)
}

func (db *Database) loadRoomsForChat(ctx context.Context, connector, chatID, receiver string) ([]*RoomRow, error) {
	rooms, err := scanRooms(db.Query(ctx, `SELECT `+roomCols+` FROM room WHERE connector=$1 AND chat_id=$2 AND receiver=$3
		ORDER BY CASE kind WHEN 'portal' THEN 0 ELSE 1 END, created_at`, connector, chatID, receiver))
	if err != nil {
		return nil, fmt.Errorf("loading rooms of chat: %w", err)
	}
	return rooms, nil
}

// RoomsForReceiver lists the rooms of the chats only one login sees (its DMs).
func (db *Database) RoomsForReceiver(ctx context.Context, connector, receiver string) ([]*RoomRow, error) {
	rooms, err := scanRooms(db.Query(ctx, `SELECT `+roomCols+` FROM room WHERE connector=$1 AND receiver=$2`, connector, receiver))
	if err != nil {
		return nil, fmt.Errorf("loading rooms of login: %w", err)
	}
	return rooms, nil
}

// LinkedChats lists the chats of a connector that have at least one linked Matrix room
// (a portal or a plumbed room), so a connector can rejoin them at start.
func (db *Database) LinkedChats(ctx context.Context, connector string) ([][3]string, error) {
	rows, err := db.Query(ctx, `SELECT DISTINCT connector, chat_id, receiver FROM room WHERE connector=$1 ORDER BY chat_id, receiver`, connector)
	if err != nil {
		return nil, fmt.Errorf("loading linked chats: %w", err)
	}
	defer rows.Close()
	var out [][3]string
	for rows.Next() {
		var k [3]string
		if err = rows.Scan(&k[0], &k[1], &k[2]); err != nil {
			return nil, fmt.Errorf("loading linked chats: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// AllRooms lists every bridged room.
func (db *Database) AllRooms(ctx context.Context) ([]*RoomRow, error) {
	rooms, err := scanRooms(db.Query(ctx, `SELECT `+roomCols+` FROM room ORDER BY created_at`))
	if err != nil {
		return nil, fmt.Errorf("loading rooms: %w", err)
	}
	return rooms, nil
}

// InsertRoom links a Matrix room to a chat.
func (db *Database) InsertRoom(ctx context.Context, r *RoomRow) error {
	defer db.forgetRooms()
	_, err := db.Exec(ctx, `INSERT INTO room (`+roomCols+`, pending_watch, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`,
		r.RoomID, r.Connector, r.ChatID, r.Receiver, r.Kind, r.RelayLogin, r.RelayOptions, r.CreatedBy, r.PendingWatch, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("linking room: %w", err)
	}
	return nil
}

// PendingWatches returns the new portals plugins were not told about yet, by
// room ID (a crash came between the room's creation and the telling).
func (db *Database) PendingWatches(ctx context.Context) (map[string]string, error) {
	rows, err := db.Query(ctx, `SELECT room_id, pending_watch FROM room WHERE pending_watch<>''`)
	if err != nil {
		return nil, fmt.Errorf("loading pending portal notifications: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var roomID, payload string
		if err = rows.Scan(&roomID, &payload); err != nil {
			return nil, fmt.Errorf("loading pending portal notifications: %w", err)
		}
		out[roomID] = payload
	}
	return out, rows.Err()
}

// ClearPendingWatch records that plugins were told about a new portal.
func (db *Database) ClearPendingWatch(ctx context.Context, roomID string) error {
	if _, err := db.Exec(ctx, `UPDATE room SET pending_watch='' WHERE room_id=$1`, roomID); err != nil {
		return fmt.Errorf("clearing pending portal notification: %w", err)
	}
	return nil
}

// SetRoomRelay sets or clears (empty login) a room's relay login and its options.
func (db *Database) SetRoomRelay(ctx context.Context, roomID, login, options string) error {
	defer db.forgetRooms()
	_, err := db.Exec(ctx, `UPDATE room SET relay_login=$2, relay_options=$3 WHERE room_id=$1`, roomID, login, options)
	if err != nil {
		return fmt.Errorf("setting relay: %w", err)
	}
	return nil
}

// DeleteRoom unlinks a room and forgets its message mappings.
func (db *Database) DeleteRoom(ctx context.Context, roomID string) error {
	defer db.forgetRooms()
	return db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := db.Exec(ctx, `DELETE FROM message WHERE room_id=$1`, roomID); err != nil {
			return fmt.Errorf("deleting room messages: %w", err)
		}
		if _, err := db.Exec(ctx, `DELETE FROM room WHERE room_id=$1`, roomID); err != nil {
			return fmt.Errorf("deleting room link: %w", err)
		}
		return nil
	})
}

// LastActivity is when a message last crossed in a room, or when the room was linked.
func (db *Database) LastActivity(ctx context.Context, roomID string) (time.Time, error) {
	var last sql.NullInt64
	err := db.QueryRow(ctx, `SELECT COALESCE((SELECT MAX(created_at) FROM message WHERE room_id=$1),
		(SELECT created_at FROM room WHERE room_id=$1))`, roomID).Scan(&last)
	if err != nil {
		return time.Time{}, fmt.Errorf("loading last activity: %w", err)
	}
	if !last.Valid {
		return time.Time{}, nil
	}
	return time.UnixMilli(last.Int64), nil
}
