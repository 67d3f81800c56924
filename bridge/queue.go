package bridge

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

// Queue runs the durable event queue: one ordered lane per key (a Matrix room, or a
// remote chat), lanes running concurrently so one slow room never holds up the others.
// An item leaves the database only once handled (or given up on visibly).
type Queue struct {
	db     *database.Database
	handle func(ctx context.Context, item database.QueueItem) error
	giveUp func(ctx context.Context, item database.QueueItem, err error)
	log    zerolog.Logger

	mu      sync.Mutex
	lanes   map[string]*lane
	stopped bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// slots bounds how many lanes run handlers at once.
	slots chan struct{}
	// MaxAttempts is how often a failing item is tried before it is given up.
	MaxAttempts int
	// Backoff is the delay before the first retry; it doubles per attempt.
	Backoff time.Duration
}

type lane struct {
	items []database.QueueItem
	seen  map[int64]struct{}
}

// NewQueue makes a queue calling handle for each item, and giveUp once for an item that
// failed for good (so the sender can be told).
func NewQueue(db *database.Database, handle func(ctx context.Context, item database.QueueItem) error,
	giveUp func(ctx context.Context, item database.QueueItem, err error), log zerolog.Logger) *Queue {
	ctx, cancel := context.WithCancel(context.Background())
	return &Queue{
		db: db, handle: handle, giveUp: giveUp, log: log,
		lanes: make(map[string]*lane), ctx: log.WithContext(ctx), cancel: cancel,
		slots:       make(chan struct{}, 64),
		MaxAttempts: 5,
		Backoff:     time.Second,
	}
}

func matrixQueueKey(roomID id.RoomID) string { return "matrix:" + roomID.String() }
func remoteQueueKey(k PortalKey) string      { return "remote:" + k.String() }

// Resume loads every unfinished item from the database (after a restart or crash).
func (q *Queue) Resume(ctx context.Context) error {
	items, err := q.db.PendingQueue(ctx)
	if err != nil {
		return err
	}
	if len(items) > 0 {
		q.log.Info().Int("items", len(items)).Msg("Resuming unfinished events")
	}
	q.Push(items...)
	return nil
}

// Push hands stored items to their lanes. Items already in a lane are ignored.
func (q *Queue) Push(items ...database.QueueItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return
	}
	for _, it := range items {
		l := q.lanes[it.Key]
		if l == nil {
			l = &lane{seen: make(map[int64]struct{})}
			q.lanes[it.Key] = l
			q.wg.Add(1)
			go q.run(it.Key, l)
		}
		if _, dup := l.seen[it.Seq]; dup {
			continue
		}
		l.seen[it.Seq] = struct{}{}
		l.items = append(l.items, it)
	}
}

func (q *Queue) run(key string, l *lane) {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		if len(l.items) == 0 || q.stopped {
			if q.lanes[key] == l {
				delete(q.lanes, key)
			}
			q.mu.Unlock()
			return
		}
		it := l.items[0]
		q.mu.Unlock()

		if !q.process(it) {
			return // stopping: the item stays in the database for the next start
		}
		q.mu.Lock()
		l.items = l.items[1:]
		delete(l.seen, it.Seq)
		q.mu.Unlock()
	}
}

// process handles one item with retries. It returns false when the queue is stopping.
func (q *Queue) process(it database.QueueItem) bool {
	log := q.log.With().Int64("seq", it.Seq).Str("queue_key", it.Key).Logger()
	ctx := log.WithContext(q.ctx)
	delay := q.Backoff
	for attempt := it.Attempts + 1; ; attempt++ {
		select {
		case q.slots <- struct{}{}:
		case <-q.ctx.Done():
			return false
		}
		last := attempt >= q.MaxAttempts
		err := q.handle(ctx, it)
		<-q.slots
		if q.ctx.Err() != nil && err != nil {
			return false
		}
		if err == nil || last || errors.Is(err, errPermanent) || !isRetryable(err) {
			if err != nil {
				log.Warn().Err(err).Int("attempt", attempt).Msg("Giving up on event")
				q.giveUp(ctx, it, err)
			}
			if cerr := q.db.CompleteQueueItem(context.WithoutCancel(ctx), it.Seq); cerr != nil {
				log.Error().Err(cerr).Msg("Removing handled event from queue failed")
			}
			return true
		}
		log.Debug().Err(err).Int("attempt", attempt).Dur("retry_in", delay).Msg("Event failed, will retry")
		if _, aerr := q.db.IncrementAttempts(ctx, it.Seq); aerr != nil {
			log.Warn().Err(aerr).Msg("Recording attempt failed")
		}
		select {
		case <-time.After(delay):
		case <-q.ctx.Done():
			return false
		}
		delay *= 2
	}
}

// Stop stops taking work and waits for running handlers to finish their current item.
func (q *Queue) Stop() {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.cancel()
	q.wg.Wait()
}
