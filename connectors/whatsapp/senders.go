package whatsapp

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
	"go.mau.fi/whatsmeow/types"

	"github.com/passerelle/passerelle/bridge"
)

// senderStore records who sent each message a login bridged, by login, chat and
// message ID. WhatsApp names a message by its chat, its ID and its sender, and says who
// the sender is only when the message arrives; removing a reaction, quoting a message
// and marking a group chat read all need it later, after restarts too, so the
// database (not process memory) is where it lives.
type senderStore struct {
	// db is the connector's handle on the bridge database (see Connector.Init).
	db *dbutil.Database
	// retention is how long a sender is kept; the message mappings the core keeps for
	// edits, reactions and replies expire after a similar time (bridge.retention), and
	// a sender is useless once its message cannot be found from Matrix.
	retention time.Duration
}

// put records a message's sender, in the form WhatsApp gave it (phone number or hidden
// ID), which is the form WhatsApp expects back.
func (st *senderStore) put(ctx context.Context, loginID, chatID, msgID string, sender types.JID) error {
	_, err := st.db.Exec(ctx, `INSERT INTO whatsapp_message_sender (login_id, chat_id, message_id, sender, created_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (login_id, chat_id, message_id) DO UPDATE SET sender=excluded.sender`,
		loginID, chatID, msgID, sender.String(), time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("storing the sender of WhatsApp message %s: %w", msgID, err)
	}
	return nil
}

// get returns a message's recorded sender; ok is false when none is recorded (a message
// from before the record existed, or past retention).
func (st *senderStore) get(ctx context.Context, loginID, chatID, msgID string) (sender types.JID, ok bool, err error) {
	var text string
	err = st.db.QueryRow(ctx, `SELECT sender FROM whatsapp_message_sender WHERE login_id=$1 AND chat_id=$2 AND message_id=$3`,
		loginID, chatID, msgID).Scan(&text)
	if errors.Is(err, sql.ErrNoRows) {
		return types.EmptyJID, false, nil
	} else if err != nil {
		return types.EmptyJID, false, fmt.Errorf("reading the sender of WhatsApp message %s: %w", msgID, err)
	}
	if sender, err = types.ParseJID(text); err != nil {
		return types.EmptyJID, false, fmt.Errorf("parsing the stored sender of WhatsApp message %s: %w", msgID, err)
	}
	return sender, true, nil
}

// prune deletes senders recorded before the given time and says how many went.
func (st *senderStore) prune(ctx context.Context, before time.Time) (int64, error) {
	res, err := st.db.Exec(ctx, `DELETE FROM whatsapp_message_sender WHERE created_at < $1`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("pruning WhatsApp message senders: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// forgetLogin deletes every sender a login recorded (when it logs out).
func (st *senderStore) forgetLogin(ctx context.Context, loginID string) error {
	if _, err := st.db.Exec(ctx, `DELETE FROM whatsapp_message_sender WHERE login_id=$1`, loginID); err != nil {
		return fmt.Errorf("deleting the login's WhatsApp message senders: %w", err)
	}
	return nil
}

// senderPruneInterval is how often senders past retention are deleted; retention is
// counted in days, so an hour late is no matter.
const senderPruneInterval = time.Hour

// run prunes senders past retention at once and then every senderPruneInterval, until
// ctx ends.
func (st *senderStore) run(ctx context.Context, host bridge.Host) {
	tick := time.NewTicker(senderPruneInterval)
	defer tick.Stop()
	for {
		n, err := st.prune(ctx, time.Now().Add(-st.retention))
		if err != nil && ctx.Err() == nil {
			host.Log().Warn().Err(err).Msg("Pruning WhatsApp message senders failed")
		} else if n > 0 {
			host.Log().Info().Int64("deleted", n).Msg("Pruned WhatsApp message senders past retention")
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
