// Package queue is the core's durable event queue: one ordered lane per key (a Matrix
// room, a remote chat), lanes run concurrently so one slow room never holds up the
// others, failures retried with backoff, and an item deleted from the database only
// once handled or given up on visibly.
package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/passerelle/passerelle/bridge/database"
)

// ErrPermanent marks failures that retrying cannot fix: an item failing with it (or
// with an error wrapping it) is given up at once.
var ErrPermanent = errors.New("permanent failure")

// Store is what the queue needs of the database (*database.Database).
type Store interface {
	PendingQueue(ctx context.Context) ([]database.QueueItem, error)
	CompleteQueueItem(ctx context.Context, seq int64) error
	IncrementAttempts(ctx context.Context, seq int64) (int, error)
	// Ping says whether the database answers: a failure while it does not is an
	// outage, waited out rather than counted against the item.
	Ping(ctx context.Context) error
}

// Queue runs the durable event queue: one ordered lane per key (a Matrix room, or a
// remote chat), lanes running concurrently so one slow room never holds up the others.
// An item leaves the database only once handled (or given up on visibly).
type Queue struct {
	db     Store
	handle func(ctx context.Context, item database.QueueItem) error
	giveUp func(ctx context.Context, item database.QueueItem, err error)
	log    zerolog.Logger

	mu    sync.Mutex
	lanes map[string]*lane
	// pending counts the items held in lanes: those stored and not yet finished, once
	// Resume ran. Intake compares it with its cap instead of counting the table.
	pending int
	// pendingKind counts pending items per kind, so each direction has its own budget.
	pendingKind map[string]int
	// space is closed (and replaced) whenever an item finishes, waking WaitLane.
	space   chan struct{}
	started bool
	stopped bool
	// ctx ends when stopping (no new items, no more retries); handlerCtx a grace
	// period later (the running handler's own context).
	ctx           context.Context
	cancel        context.CancelFunc
	handlerCtx    context.Context
	handlerCancel context.CancelFunc
	wg            sync.WaitGroup
	// slots bounds how many lanes run handlers at once.
	slots chan struct{}
	// MaxAttempts is how often a failing item is tried before it is given up. With the
	// backoff capped at MaxBackoff, the default keeps retrying a failure for about an
	// hour and a half; outages (the database not answering, Outage) never count.
	MaxAttempts int
	// Backoff is the delay before the first retry; it doubles per attempt up to
	// MaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// StopGrace is how long Stop lets a running handler finish.
	StopGrace time.Duration
	// Retryable says whether a failure is worth another try (nil: all are, but
	// ErrPermanent).
	Retryable func(error) bool
	// Outage says whether a failure means a part the item needs is away (the
	// homeserver unreachable, say): such failures are retried with backoff for as long
	// as it takes and never count toward MaxAttempts. The database's own outages are
	// recognised without it (Store.Ping).
	Outage func(error) bool
	// Finished, when set, is called once an item has left the database, handled or
	// given up, to release what it held outside it (a spooled file).
	Finished func(item database.QueueItem)
}

type lane struct {
	items []database.QueueItem
	seen  map[int64]struct{}
}

// New makes a queue calling handle for each item, and giveUp once for an item that
// failed for good (so the sender can be told).
func New(db Store, handle func(ctx context.Context, item database.QueueItem) error,
	giveUp func(ctx context.Context, item database.QueueItem, err error), log zerolog.Logger) *Queue {
	ctx, cancel := context.WithCancel(context.Background())
	hctx, hcancel := context.WithCancel(context.Background())
	return &Queue{
		db: db, handle: handle, giveUp: giveUp, log: log,
		lanes: make(map[string]*lane), pendingKind: make(map[string]int), space: make(chan struct{}),
		ctx: log.WithContext(ctx), cancel: cancel,
		handlerCtx: log.WithContext(hctx), handlerCancel: hcancel,
		slots:       make(chan struct{}, 64),
		MaxAttempts: 100,
		Backoff:     time.Second,
		MaxBackoff:  time.Minute,
		StopGrace:   10 * time.Second,
	}
}

// Resume loads every unfinished item from the database (after a restart or crash).
func (q *Queue) Resume(ctx context.Context) error {
	// Holding the lock while reading makes the hand-over exact: items stored before the
	// read are in it, items stored after reach Push once started is set, and nothing
	// is handled before the older items it must follow.
	q.mu.Lock()
	defer q.mu.Unlock()
	items, err := q.db.PendingQueue(ctx)
	if err != nil {
		return err
	}
	if len(items) > 0 {
		q.log.Info().Int("items", len(items)).Msg("Resuming unfinished events")
	}
	q.started = true
	q.pushLocked(items)
	return nil
}

// Len is how many stored items wait in the lanes or are being handled.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending
}

// LenKind is how many stored items of the given kinds wait or are being handled.
func (q *Queue) LenKind(kinds ...string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, k := range kinds {
		n += q.pendingKind[k]
	}
	return n
}

// WaitLane waits until the lane of key holds fewer than limit items, so a producer
// that outruns one chat (a flood) is slowed down instead of queueing without bound.
// Other lanes are not affected.
func (q *Queue) WaitLane(ctx context.Context, key string, limit int) error {
	for {
		q.mu.Lock()
		l := q.lanes[key]
		if l == nil || len(l.items) < limit || q.stopped || !q.started {
			q.mu.Unlock()
			return nil
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// LaneLen is the number of items waiting in key's lane.
func (q *Queue) LaneLen(key string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if l := q.lanes[key]; l != nil {
		return len(l.items)
	}
	return 0
}

// Push hands stored items to their lanes. Before Resume ran, items are only kept in the
// database (Resume picks them up in order); items already in a lane are ignored.
func (q *Queue) Push(items ...database.QueueItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped || !q.started {
		return
	}
	q.pushLocked(items)
}

func (q *Queue) pushLocked(items []database.QueueItem) {
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
		q.pending++
		q.pendingKind[it.Kind]++
		// Keep each lane in arrival (seq) order even when pushes race; the head may
		// be running, so an item never goes before it.
		i := len(l.items)
		for i > 1 && l.items[i-1].Seq > it.Seq {
			i--
		}
		l.items = append(l.items, database.QueueItem{})
		copy(l.items[i+1:], l.items[i:])
		l.items[i] = it
	}
}

func (q *Queue) run(key string, l *lane) {
	defer q.wg.Done()
	// prevDone is when the lane finished its previous item: an item that arrived
	// before then waited behind it.
	var prevDone time.Time
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

		if !it.Accepted.IsZero() && prevDone.After(it.Accepted) {
			it.Behind = prevDone.Sub(it.Accepted)
		}
		if !q.process(it) {
			return // stopping: the item stays in the database for the next start
		}
		prevDone = time.Now()
		q.mu.Lock()
		l.items = l.items[1:]
		delete(l.seen, it.Seq)
		q.pending--
		q.pendingKind[it.Kind]--
		close(q.space)
		q.space = make(chan struct{})
		q.mu.Unlock()
	}
}

// process handles one item with retries. It returns false when the queue is stopping.
func (q *Queue) process(it database.QueueItem) bool {
	log := q.log.With().Int64("seq", it.Seq).Str("queue_key", it.Key).Logger()
	// Handlers run on their own context: stopping lets the current item finish (up to a
	// grace period) instead of cutting a send in half and repeating it after restart.
	ctx := log.WithContext(q.handlerCtx)
	delay := q.Backoff
	outageDelay := q.Backoff
	attempt := it.Attempts
	// ran says whether a handler ran this item before, in this process or before a
	// restart: it may have done part of its work, outage or not.
	ran := it.Attempts > 0
	for {
		select {
		case q.slots <- struct{}{}:
		case <-q.ctx.Done():
			return false
		}
		it.Retried = ran
		err := q.safeHandle(ctx, it)
		<-q.slots
		ran = true
		if q.handlerCtx.Err() != nil && err != nil {
			return false
		}
		if err != nil && !errors.Is(err, ErrPermanent) {
			outage, stopping := q.waitOutage(log, err, &outageDelay)
			if stopping {
				return false
			}
			if outage {
				continue // not the item's fault: it does not count as an attempt
			}
		}
		outageDelay = q.Backoff
		attempt++
		last := attempt >= q.MaxAttempts
		if err == nil || last || errors.Is(err, ErrPermanent) || (q.Retryable != nil && !q.Retryable(err)) {
			// The item leaves the database before its sender is told it was given up:
			// an item told as lost must never be handled after a restart.
			if !q.complete(log, it.Seq) {
				return false
			}
			if q.Finished != nil {
				q.Finished(it)
			}
			if err != nil {
				log.Warn().Err(err).Int("attempt", attempt).Msg("Giving up on event")
				q.giveUp(ctx, it, err)
			}
			return true
		}
		if attempt >= 5 {
			log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", delay).Msg("Event keeps failing, will retry")
		} else {
			log.Debug().Err(err).Int("attempt", attempt).Dur("retry_in", delay).Msg("Event failed, will retry")
		}
		if _, aerr := q.db.IncrementAttempts(context.WithoutCancel(ctx), it.Seq); aerr != nil {
			log.Warn().Err(aerr).Msg("Recording attempt failed")
		}
		if !q.sleep(delay) {
			return false
		}
		if delay *= 2; delay > q.MaxBackoff {
			delay = q.MaxBackoff
		}
	}
}

// waitOutage tells an outage from the item's own failure. When the database does not
// answer, it waits until it does; when the failure is another outage (Outage), it waits
// one growing backoff step. It reports whether err was an outage, and whether the
// queue began stopping meanwhile.
func (q *Queue) waitOutage(log zerolog.Logger, err error, delay *time.Duration) (outage, stopping bool) {
	if q.dbDown() {
		log.Warn().Err(err).Msg("The database does not answer; the event waits for it")
		if !q.waitDB() {
			return true, true
		}
		log.Info().Msg("The database answers again; resuming")
		return true, false
	}
	if q.Outage == nil || !q.Outage(err) {
		return false, false
	}
	log.Warn().Err(err).Dur("retry_in", *delay).Msg("A part the event needs is unreachable; waiting for it")
	if !q.sleep(*delay) {
		return true, true
	}
	if *delay *= 2; *delay > q.MaxBackoff {
		*delay = q.MaxBackoff
	}
	return true, false
}

func (q *Queue) dbDown() bool {
	ctx, cancel := context.WithTimeout(q.ctx, 10*time.Second)
	defer cancel()
	return q.db.Ping(ctx) != nil && q.ctx.Err() == nil
}

// waitDB polls the database with backoff until it answers; false if stopping first.
func (q *Queue) waitDB() bool {
	delay := q.Backoff
	for q.dbDown() {
		if !q.sleep(delay) {
			return false
		}
		if delay *= 2; delay > q.MaxBackoff {
			delay = q.MaxBackoff
		}
	}
	return q.ctx.Err() == nil
}

// complete removes a finished item from the database, waiting out a database outage:
// an item left behind would be handled again after a restart. False if stopping first
// (the item then stays, and is handled again; handlers are idempotent for that case).
func (q *Queue) complete(log zerolog.Logger, seq int64) bool {
	for {
		err := q.db.CompleteQueueItem(context.WithoutCancel(q.ctx), seq)
		if err == nil {
			return true
		}
		log.Error().Err(err).Msg("Removing a finished event from the queue failed; waiting for the database")
		if !q.waitDB() || !q.sleep(q.Backoff) {
			return false
		}
	}
}

// sleep waits d; false if the queue began stopping first.
func (q *Queue) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-q.ctx.Done():
		return false
	}
}

// AttemptsFor is how many attempts retrying with backoff (doubling from backoff, capped
// at maxBackoff) takes to span window.
func AttemptsFor(window, backoff, maxBackoff time.Duration) int {
	attempts, spent, delay := 1, time.Duration(0), backoff
	for spent < window {
		spent += delay
		attempts++
		if delay *= 2; delay > maxBackoff {
			delay = maxBackoff
		}
	}
	return attempts
}

// safeHandle turns a handler panic into a permanent failure, so one bad event cannot
// crash the bridge (and crash it again at every restart, being durable).
func (q *Queue) safeHandle(ctx context.Context, it database.QueueItem) (err error) {
	defer func() {
		if r := recover(); r != nil {
			zerolog.Ctx(ctx).Error().Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).Msg("Event handler panicked")
			err = fmt.Errorf("%w: handler panicked: %v", ErrPermanent, r)
		}
	}()
	return q.handle(ctx, it)
}

// Stop stops taking work, lets running handlers finish their current item for up to
// the grace period, and waits for them. Unfinished items stay in the database.
func (q *Queue) Stop() {
	q.mu.Lock()
	q.stopped = true
	close(q.space) // producers waiting in WaitLane go on (Push ignores their items now)
	q.space = make(chan struct{})
	q.mu.Unlock()
	q.cancel()
	done := make(chan struct{})
	go func() {
		q.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(q.StopGrace):
		q.handlerCancel()
		<-done
	}
	q.handlerCancel()
}
