package whatsapp

import (
	"context"
	"encoding/json"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/passerelle/passerelle/bridge"
)

// disappearing honours WhatsApp's disappearing-message timers on Matrix: a message
// that disappears on the phone is redacted from its portal at the same time, and
// messages sent from Matrix into such a chat carry the chat's timer. Deadlines are
// stored, so a restart does not keep a message that should be gone.
type disappearing struct {
	host bridge.Host
	// db is the connector's handle on the bridge database (see Connector.Init).
	db *dbutil.Database
	// wake shortens the wait when a nearer deadline is scheduled.
	wake chan struct{}
}

// newDisappearing keeps the timers and deadlines in the connector's tables, on db as
// bridge.OpenTables returned it.
func newDisappearing(host bridge.Host, db *dbutil.Database) *disappearing {
	return &disappearing{host: host, db: db, wake: make(chan struct{}, 1)}
}

// chatKeyText is a portal key as one column.
func chatKeyText(key bridge.PortalKey) (string, error) {
	data, err := json.Marshal(key)
	return string(data), err
}

// setChatTimer records a chat's timer (0 turns it off).
func (d *disappearing) setChatTimer(ctx context.Context, key bridge.PortalKey, seconds uint32) error {
	k, err := chatKeyText(key)
	if err != nil {
		return err
	}
	if seconds == 0 {
		_, err = d.db.Exec(ctx, `DELETE FROM whatsapp_chat_timer WHERE chat_key=$1`, k)
	} else {
		_, err = d.db.Exec(ctx, `INSERT INTO whatsapp_chat_timer (chat_key, receiver, seconds) VALUES ($1, $2, $3)
			ON CONFLICT (chat_key) DO UPDATE SET seconds=excluded.seconds`, k, key.Receiver, int64(seconds))
	}
	return err
}

// chatTimer returns a chat's timer in seconds, 0 when off.
func (d *disappearing) chatTimer(ctx context.Context, key bridge.PortalKey) uint32 {
	k, err := chatKeyText(key)
	if err != nil {
		return 0
	}
	var secs int64
	if err = d.db.QueryRow(ctx, `SELECT seconds FROM whatsapp_chat_timer WHERE chat_key=$1`, k).Scan(&secs); err != nil {
		return 0
	}
	return uint32(secs)
}

// schedule remembers when a message disappears.
func (d *disappearing) schedule(ctx context.Context, key bridge.PortalKey, messageID string, at time.Time) {
	k, err := chatKeyText(key)
	if err == nil {
		_, err = d.db.Exec(ctx, `INSERT INTO whatsapp_disappearing (chat_key, receiver, message_id, expires_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (chat_key, message_id) DO NOTHING`, k, key.Receiver, messageID, at.UnixMilli())
	}
	if err != nil {
		d.host.Log().Warn().Err(err).Object("portal", key).Msg("Scheduling a disappearing message failed")
		return
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// forgetReceiver drops a logged-out login's timers and deadlines.
func (d *disappearing) forgetReceiver(ctx context.Context, receiver string) {
	_, _ = d.db.Exec(ctx, `DELETE FROM whatsapp_disappearing WHERE receiver=$1`, receiver)
	_, _ = d.db.Exec(ctx, `DELETE FROM whatsapp_chat_timer WHERE receiver=$1`, receiver)
}

// run redacts messages as their deadlines pass, until ctx ends.
func (d *disappearing) run(ctx context.Context) {
	for {
		next := d.expire(ctx)
		wait := time.Minute
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-d.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// expire queues redactions for every message past its deadline and returns the next
// deadline (zero when none).
func (d *disappearing) expire(ctx context.Context) time.Time {
	now := time.Now().UnixMilli()
	rows, err := d.db.Query(ctx, `SELECT chat_key, message_id FROM whatsapp_disappearing WHERE expires_at <= $1`, now)
	if err != nil {
		d.host.Log().Warn().Err(err).Msg("Reading disappearing messages failed")
		return time.Now().Add(time.Minute)
	}
	type due struct{ key, msgID string }
	var dues []due
	for rows.Next() {
		var x due
		if err = rows.Scan(&x.key, &x.msgID); err == nil {
			dues = append(dues, x)
		}
	}
	rows.Close()
	for _, x := range dues {
		var key bridge.PortalKey
		if err = json.Unmarshal([]byte(x.key), &key); err != nil {
			continue
		}
		// The redaction is queued durably before the deadline is forgotten.
		evt := &bridge.RemoteEvent{Type: bridge.RemoteRedaction, Chat: key, TargetID: bridge.RemoteMessageID(x.msgID), Reason: "disappearing message"}
		if err = d.host.QueueRemoteEvent(ctx, evt); err != nil {
			d.host.Log().Warn().Err(err).Msg("Queueing a disappearing-message redaction failed")
			return time.Now().Add(time.Minute)
		}
		_, _ = d.db.Exec(ctx, `DELETE FROM whatsapp_disappearing WHERE chat_key=$1 AND message_id=$2`, x.key, x.msgID)
	}
	var next *int64
	if err = d.db.QueryRow(ctx, `SELECT MIN(expires_at) FROM whatsapp_disappearing`).Scan(&next); err != nil || next == nil {
		return time.Time{}
	}
	return time.UnixMilli(*next)
}
