package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// QueueItem is one unit of durable work: a Matrix event or a remote event waiting for
// its room's worker.
type QueueItem struct {
	Seq      int64
	Key      string
	Kind     string
	Payload  []byte
	Attempts int
	// Resumed marks an item loaded after a restart: its handling may have been cut
	// short by a crash after an effect but before it was recorded.
	Resumed bool
	// Accepted is when the event reached the bridge, for latency metrics; only in
	// memory (zero for items loaded after a restart).
	Accepted time.Time
	// Retried marks an attempt after one that failed in this run (the failed one
	// may have had effects before failing). Only in memory.
	Retried bool
	// Behind is how long the item waited for the items before it in its lane to
	// finish (set by the queue as it starts the item): time its lane spent on others.
	Behind time.Duration
}

// TxnItem is one event of an appservice transaction.
type TxnItem struct {
	// DedupKey identifies the event across retries: its event ID, or for ephemeral
	// events a key derived from the transaction ID and position.
	DedupKey string
	Key      string
	Kind     string
	Payload  []byte
}

// AcceptTransaction queues a homeserver transaction's events in one database
// transaction, skipping events accepted before (a retried transaction, or the same state
// event pushed twice). It returns the newly queued items.
func (db *Database) AcceptTransaction(ctx context.Context, items []TxnItem) (added []QueueItem, err error) {
	now := time.Now().UnixMilli()
	err = db.DoTxn(ctx, nil, func(ctx context.Context) error {
		added = make([]QueueItem, 0, len(items))
		for _, it := range items {
			res, err := db.Exec(ctx, `INSERT INTO inbox_seen (dedup_key, received_at) VALUES ($1, $2) ON CONFLICT (dedup_key) DO NOTHING`, it.DedupKey, now)
			if err != nil {
				return fmt.Errorf("recording event key: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue
			}
			item, err := db.insertQueueItem(ctx, it.Key, it.Kind, it.Payload, now)
			if err != nil {
				return err
			}
			added = append(added, item)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return added, nil
}

// Enqueue stores one work item (a remote event) durably.
func (db *Database) Enqueue(ctx context.Context, key, kind string, payload []byte) (QueueItem, error) {
	return db.insertQueueItem(ctx, key, kind, payload, time.Now().UnixMilli())
}

func (db *Database) insertQueueItem(ctx context.Context, key, kind string, payload []byte, now int64) (QueueItem, error) {
	item := QueueItem{Key: key, Kind: kind, Payload: payload}
	err := db.QueryRow(ctx, `INSERT INTO event_queue (queue_key, kind, payload, created_at) VALUES ($1, $2, $3, $4) RETURNING seq`,
		key, kind, string(payload), now).Scan(&item.Seq)
	if err != nil {
		return item, fmt.Errorf("queueing event: %w", err)
	}
	return item, nil
}

// PendingQueue returns every unfinished item in arrival order, for resuming after a
// restart or crash.
func (db *Database) PendingQueue(ctx context.Context) ([]QueueItem, error) {
	rows, err := db.Query(ctx, `SELECT seq, queue_key, kind, payload, attempts FROM event_queue ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("loading event queue: %w", err)
	}
	defer rows.Close()
	var out []QueueItem
	for rows.Next() {
		var it QueueItem
		var payload string
		if err = rows.Scan(&it.Seq, &it.Key, &it.Kind, &payload, &it.Attempts); err != nil {
			return nil, fmt.Errorf("reading event queue: %w", err)
		}
		it.Payload = []byte(payload)
		it.Resumed = true
		out = append(out, it)
	}
	return out, rows.Err()
}

// QueueLength counts unfinished items.
func (db *Database) QueueLength(ctx context.Context) (int, error) {
	var n int
	err := db.QueryRow(ctx, `SELECT COUNT(*) FROM event_queue`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting event queue: %w", err)
	}
	return n, nil
}

// CompleteQueueItem removes a handled item.
func (db *Database) CompleteQueueItem(ctx context.Context, seq int64) error {
	_, err := db.Exec(ctx, `DELETE FROM event_queue WHERE seq=$1`, seq)
	if err != nil {
		return fmt.Errorf("completing queue item %d: %w", seq, err)
	}
	return nil
}

// IncrementAttempts records a failed attempt and returns the new count.
func (db *Database) IncrementAttempts(ctx context.Context, seq int64) (int, error) {
	var n int
	err := db.QueryRow(ctx, `UPDATE event_queue SET attempts=attempts+1 WHERE seq=$1 RETURNING attempts`, seq).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("recording attempt on queue item %d: %w", seq, err)
	}
	return n, nil
}

// PruneInboxKeys forgets dedup keys older than the cutoff. Homeservers give up retrying
// long before, so an old key will not come back.
func (db *Database) PruneInboxKeys(ctx context.Context, before time.Time) error {
	_, err := db.Exec(ctx, `DELETE FROM inbox_seen WHERE received_at < $1`, before.UnixMilli())
	if err != nil {
		return fmt.Errorf("pruning transaction log: %w", err)
	}
	return nil
}

// Ping says whether the database answers (the queue tells an outage from an event's
// own failure by it).
func (db *Database) Ping(ctx context.Context) error {
	return db.RawDB.PingContext(ctx)
}
