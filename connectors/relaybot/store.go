package relaybot

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
)

// upgradeFiles holds the migrations of the relay bot's tables, which bridge.OpenTables
// versions in relaybot_version.
//
//go:embed upgrades/*.sql
var upgradeFiles embed.FS

// store keeps the relay policy's own records beside the core's tables: conversations
// and their assignees, who was greeted, and lobbies the bridge made.
type store struct {
	db *dbutil.Database
}

// newStore opens the relay bot's tables on the bridge's database, bringing them up to
// date first.
func newStore(ctx context.Context, db *dbutil.Database) (*store, error) {
	// Only the database is handed over, so the upgrade logs through the bridge
	// database's logger.
	child, err := bridge.OpenTables(ctx, db, "relaybot", upgradeFiles, nil)
	if err != nil {
		return nil, err
	}
	return &store{db: child}, nil
}

// conversation is one relay room.
type conversation struct {
	RoomID     id.RoomID
	Account    string
	Chat       bridge.PortalKey
	Contact    string
	Trigger    bridge.PortalTrigger
	LoginOwner id.UserID
	CreatedAt  time.Time
	Assignees  []id.UserID
}

func (s *store) openConversation(ctx context.Context, c *conversation) error {
	_, err := s.db.Exec(ctx, `INSERT INTO relaybot_conversation (room_id, account, connector, chat_id, receiver, contact,
		opened_by, login_owner, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (room_id) DO NOTHING`,
		c.RoomID, c.Account, c.Chat.Connector, c.Chat.ChatID, c.Chat.Receiver, c.Contact, string(c.Trigger), c.LoginOwner,
		time.Now().UnixMilli())
	return err
}

// markReady records that a conversation's set-up finished.
func (s *store) markReady(ctx context.Context, room id.RoomID) error {
	_, err := s.db.Exec(ctx, `UPDATE relaybot_conversation SET ready=1 WHERE room_id=$1`, room)
	return err
}

// unready lists open conversations whose set-up did not finish.
func (s *store) unready(ctx context.Context) ([]*conversation, error) {
	return s.list(ctx, `WHERE ready=0 AND closed_at IS NULL ORDER BY created_at`)
}

func (s *store) addAssignee(ctx context.Context, room id.RoomID, user id.UserID) error {
	_, err := s.db.Exec(ctx, `INSERT INTO relaybot_assignee (room_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, room, user)
	return err
}

func (s *store) removeAssignee(ctx context.Context, room id.RoomID, user id.UserID) (bool, error) {
	res, err := s.db.Exec(ctx, `DELETE FROM relaybot_assignee WHERE room_id=$1 AND user_id=$2`, room, user)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// conversation returns an open conversation by room, or nil.
func (s *store) conversation(ctx context.Context, room id.RoomID) (*conversation, error) {
	convs, err := s.list(ctx, `WHERE room_id=$1 AND closed_at IS NULL`, room)
	if err != nil || len(convs) == 0 {
		return nil, err
	}
	return convs[0], nil
}

// open lists an account's open conversations, oldest first.
func (s *store) open(ctx context.Context, account string) ([]*conversation, error) {
	return s.list(ctx, `WHERE account=$1 AND closed_at IS NULL ORDER BY created_at`, account)
}

func (s *store) list(ctx context.Context, where string, args ...any) ([]*conversation, error) {
	rows, err := s.db.Query(ctx, `SELECT room_id, account, connector, chat_id, receiver, contact, opened_by, login_owner, created_at
		FROM relaybot_conversation `+where, args...)
	if err != nil {
		return nil, err
	}
	var convs []*conversation
	for rows.Next() {
		var c conversation
		var created int64
		var trigger string
		if err = rows.Scan(&c.RoomID, &c.Account, &c.Chat.Connector, &c.Chat.ChatID, &c.Chat.Receiver, &c.Contact, &trigger,
			&c.LoginOwner, &created); err != nil {
			rows.Close()
			return nil, err
		}
		c.CreatedAt = time.UnixMilli(created)
		c.Trigger = bridge.PortalTrigger(trigger)
		convs = append(convs, &c)
	}
	rows.Close()
	if err = rows.Err(); err != nil {
		return nil, err
	}
	for _, c := range convs {
		if c.Assignees, err = s.assignees(ctx, c.RoomID); err != nil {
			return nil, err
		}
	}
	return convs, nil
}

func (s *store) assignees(ctx context.Context, room id.RoomID) ([]id.UserID, error) {
	rows, err := s.db.Query(ctx, `SELECT user_id FROM relaybot_assignee WHERE room_id=$1 ORDER BY user_id`, room)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var users []id.UserID
	for rows.Next() {
		var u id.UserID
		if err = rows.Scan(&u); err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, rows.Err()
}

// close marks a conversation closed; with no retention its record goes at once.
func (s *store) close(ctx context.Context, room id.RoomID, retention time.Duration) error {
	if retention == 0 {
		// Nothing kept: not even that the contact was greeted.
		_, err := s.db.Exec(ctx, `DELETE FROM relaybot_greeted WHERE EXISTS (SELECT 1 FROM relaybot_conversation c
			WHERE c.room_id=$1 AND c.account=relaybot_greeted.account AND c.connector=relaybot_greeted.connector
			AND c.chat_id=relaybot_greeted.chat_id AND c.receiver=relaybot_greeted.receiver)`, room)
		if err == nil {
			_, err = s.db.Exec(ctx, `DELETE FROM relaybot_conversation WHERE room_id=$1`, room)
		}
		return err
	}
	_, err := s.db.Exec(ctx, `UPDATE relaybot_conversation SET closed_at=$2 WHERE room_id=$1`, room, time.Now().UnixMilli())
	return err
}

// forgetClosed erases an account's conversations closed before the cutoff, and that
// their contacts were greeted unless they have a newer conversation.
func (s *store) forgetClosed(ctx context.Context, account string, before time.Time) error {
	_, err := s.db.Exec(ctx, `DELETE FROM relaybot_conversation WHERE account=$1 AND closed_at IS NOT NULL AND closed_at <= $2`,
		account, before.UnixMilli())
	if err == nil {
		_, err = s.db.Exec(ctx, `DELETE FROM relaybot_greeted WHERE account=$1 AND NOT EXISTS (SELECT 1 FROM relaybot_conversation c
			WHERE c.account=relaybot_greeted.account AND c.connector=relaybot_greeted.connector
			AND c.chat_id=relaybot_greeted.chat_id AND c.receiver=relaybot_greeted.receiver)`, account)
	}
	return err
}

// markGreeted records that a contact got the greeting; false when they already had.
func (s *store) markGreeted(ctx context.Context, account string, chat bridge.PortalKey) (bool, error) {
	res, err := s.db.Exec(ctx, `INSERT INTO relaybot_greeted (account, connector, chat_id, receiver) VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, account, chat.Connector, chat.ChatID, chat.Receiver)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (s *store) unmarkGreeted(ctx context.Context, account string, chat bridge.PortalKey) error {
	_, err := s.db.Exec(ctx, `DELETE FROM relaybot_greeted WHERE account=$1 AND connector=$2 AND chat_id=$3 AND receiver=$4`,
		account, chat.Connector, chat.ChatID, chat.Receiver)
	return err
}

func (s *store) lobby(ctx context.Context, account string) (id.RoomID, error) {
	var room id.RoomID
	err := s.db.QueryRow(ctx, `SELECT room_id FROM relaybot_lobby WHERE account=$1`, account).Scan(&room)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return room, err
}

func (s *store) setLobby(ctx context.Context, account string, room id.RoomID) error {
	_, err := s.db.Exec(ctx, `INSERT INTO relaybot_lobby (account, room_id) VALUES ($1, $2)
		ON CONFLICT (account) DO UPDATE SET room_id=excluded.room_id`, account, room)
	return err
}
