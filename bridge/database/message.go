package database

import (
	"context"
	"fmt"
	"time"
)

// MessageRow maps one Matrix event in one room to one remote message (or reaction).
// A Matrix message split into several remote messages has several rows; a remote
// message bridged into several rooms (plumbed twice) has a row per room.
type MessageRow struct {
	RoomID, EventID             string
	Connector, ChatID, Receiver string
	RemoteID                    string
	Part                        int
	Kind                        string
	SenderMXID                  string
	RelayLogin                  string
	TargetRemoteID, Emoji       string
	CreatedAt                   time.Time
}

// Message kinds.
const (
	KindMessage  = "message"
	KindReaction = "reaction"
)

const messageCols = `room_id, event_id, connector, chat_id, receiver, remote_id, part, kind, sender_mxid, relay_login, target_remote_id, emoji, created_at`

func (db *Database) queryMessages(ctx context.Context, where string, args ...any) ([]*MessageRow, error) {
	rows, err := db.Query(ctx, `SELECT `+messageCols+` FROM message `+where+` ORDER BY part`, args...)
	if err != nil {
		return nil, fmt.Errorf("loading message map: %w", err)
	}
	defer rows.Close()
	var out []*MessageRow
	for rows.Next() {
		var m MessageRow
		var created int64
		if err = rows.Scan(&m.RoomID, &m.EventID, &m.Connector, &m.ChatID, &m.Receiver, &m.RemoteID, &m.Part, &m.Kind,
			&m.SenderMXID, &m.RelayLogin, &m.TargetRemoteID, &m.Emoji, &created); err != nil {
			return nil, fmt.Errorf("reading message map: %w", err)
		}
		m.CreatedAt = time.UnixMilli(created)
		out = append(out, &m)
	}
	return out, rows.Err()
}

// MessagesByEvent returns the remote messages a Matrix event maps to.
func (db *Database) MessagesByEvent(ctx context.Context, roomID, eventID string) ([]*MessageRow, error) {
	return db.queryMessages(ctx, `WHERE room_id=$1 AND event_id=$2`, roomID, eventID)
}

// MessageByRemote returns the Matrix event a remote message maps to in one room.
func (db *Database) MessageByRemote(ctx context.Context, roomID, connector, chatID, receiver, remoteID string) (*MessageRow, error) {
	msgs, err := db.queryMessages(ctx, `WHERE room_id=$1 AND connector=$2 AND chat_id=$3 AND receiver=$4 AND remote_id=$5`,
		roomID, connector, chatID, receiver, remoteID)
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	return msgs[0], nil
}

// ReactionBy finds a reaction row by its target, sender and emoji in a room.
func (db *Database) ReactionBy(ctx context.Context, roomID, targetRemoteID, senderKey, emoji string) (*MessageRow, error) {
	msgs, err := db.queryMessages(ctx, `WHERE room_id=$1 AND kind='reaction' AND target_remote_id=$2 AND sender_mxid=$3 AND emoji=$4`,
		roomID, targetRemoteID, senderKey, emoji)
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	return msgs[0], nil
}

// ReactionsBy returns every reaction one sender put on a message in a room, whatever
// the emoji (for networks that allow one reaction per person).
func (db *Database) ReactionsBy(ctx context.Context, roomID, targetRemoteID, senderKey string) ([]*MessageRow, error) {
	return db.queryMessages(ctx, `WHERE room_id=$1 AND kind='reaction' AND target_remote_id=$2 AND sender_mxid=$3`,
		roomID, targetRemoteID, senderKey)
}

// InsertMessages stores mappings; rows already present are left as they are.
func (db *Database) InsertMessages(ctx context.Context, msgs ...*MessageRow) error {
	return db.DoTxn(ctx, nil, func(ctx context.Context) error {
		for _, m := range msgs {
			created := m.CreatedAt
			if created.IsZero() {
				created = time.Now()
			}
			kind := m.Kind
			if kind == "" {
				kind = KindMessage
			}
			_, err := db.Exec(ctx, `INSERT INTO message (`+messageCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)
				ON CONFLICT (room_id, event_id, remote_id) DO NOTHING`,
				m.RoomID, m.EventID, m.Connector, m.ChatID, m.Receiver, m.RemoteID, m.Part, kind,
				m.SenderMXID, m.RelayLogin, m.TargetRemoteID, m.Emoji, created.UnixMilli())
			if err != nil {
				return fmt.Errorf("saving message map: %w", err)
			}
		}
		return nil
	})
}

// DeleteMessagesByEvent forgets the mappings of a Matrix event.
func (db *Database) DeleteMessagesByEvent(ctx context.Context, roomID, eventID string) error {
	_, err := db.Exec(ctx, `DELETE FROM message WHERE room_id=$1 AND event_id=$2`, roomID, eventID)
	if err != nil {
		return fmt.Errorf("deleting message map: %w", err)
	}
	return nil
}

// PruneMessages deletes mappings older than the cutoff and returns how many.
func (db *Database) PruneMessages(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.Exec(ctx, `DELETE FROM message WHERE created_at < $1`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("pruning message map: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
