package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

// errNotRetryable is a failure the test's retry policy refuses.
var errNotRetryable = errors.New("not worth retrying")

// testTimeout bounds every wait on a channel so a broken queue fails instead of hanging.
// It is never what a test asserts on.
const testTimeout = 10 * time.Second

func openTestDB(t testing.TB) *database.Database { return dbtest.OpenSQLite(t) }

func enqueue(t testing.TB, db *database.Database, key, payload string) database.QueueItem {
	t.Helper()
	it, err := db.Enqueue(context.Background(), key, "matrix", []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	return it
}

func pendingSeqs(t testing.TB, db *database.Database) []int64 {
	t.Helper()
	items, err := db.PendingQueue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, it := range items {
		out = append(out, it.Seq)
	}
	return out
}

func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func noGiveUp(t testing.TB) func(context.Context, database.QueueItem, error) {
	return func(_ context.Context, it database.QueueItem, err error) {
		t.Errorf("unexpected give-up on item %d: %v", it.Seq, err)
	}
}

func TestQueueOrderWithinLane(t *testing.T) {
	tests := []struct {
		name  string
		keys  []string
		items int // per key
	}{
		{"one lane", []string{"matrix:!a:x"}, 30},
		{"three interleaved lanes", []string{"matrix:!a:x", "remote:irc|#b", "matrix:!c:x"}, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openTestDB(t)
			total := len(tt.keys) * tt.items
			handled := make(chan database.QueueItem, total)
			q := New(db, func(ctx context.Context, it database.QueueItem) error {
				handled <- it
				return nil
			}, noGiveUp(t), zerolog.Nop())
			startQueue(t, q)
			t.Cleanup(q.Stop)

			want := map[string][]string{}
			var all []database.QueueItem
			for i := 0; i < tt.items; i++ {
				for _, k := range tt.keys {
					p := fmt.Sprintf("%s#%d", k, i)
					all = append(all, enqueue(t, db, k, p))
					want[k] = append(want[k], p)
				}
			}
			// Pushed in small batches, as transactions arrive.
			for i := 0; i < len(all); i += 7 {
				q.Push(all[i:min(i+7, len(all))]...)
			}
			got := map[string][]string{}
			for range total {
				it := recv(t, handled, "handled item")
				got[it.Key] = append(got[it.Key], string(it.Payload))
			}
			for _, k := range tt.keys {
				if !slices.Equal(got[k], want[k]) {
					t.Errorf("lane %s handled %v, want %v", k, got[k], want[k])
				}
			}
			q.Stop()
			if left := pendingSeqs(t, db); len(left) != 0 {
				t.Errorf("handled items left in database: %v", left)
			}
		})
	}
}

func TestQueuePushIgnoresItemsAlreadyInLane(t *testing.T) {
	db := openTestDB(t)
	release := make(chan struct{})
	handled := make(chan string, 10)
	q := New(db, func(ctx context.Context, it database.QueueItem) error {
		if string(it.Payload) == "first" {
			<-release
		}
		handled <- string(it.Payload)
		return nil
	}, noGiveUp(t), zerolog.Nop())
	startQueue(t, q)
	t.Cleanup(q.Stop)
	a := enqueue(t, db, "k", "first")
	b := enqueue(t, db, "k", "second")
	q.Push(a, b)
	q.Push(a, b, b) // e.g. Resume racing with the inbox, while "first" is being handled
	// A later item of the same lane: whatever is handled before it is all there is.
	q.Push(enqueue(t, db, "k", "last"))
	close(release)
	var got []string
	for len(got) == 0 || got[len(got)-1] != "last" {
		got = append(got, recv(t, handled, "lane to reach the last item"))
	}
	if !slices.Equal(got, []string{"first", "second", "last"}) {
		t.Errorf("handled %v, want each item once, in order", got)
	}
}

func TestQueueBlockedLaneDoesNotBlockOthers(t *testing.T) {
	db := openTestDB(t)
	bHandled := make(chan struct{})
	aStarted := make(chan struct{})
	aDone := make(chan error, 1)
	q := New(db, func(ctx context.Context, it database.QueueItem) error {
		switch it.Key {
		case "lane-a":
			close(aStarted)
			select {
			case <-bHandled:
				aDone <- nil
				return nil
			case <-ctx.Done():
				aDone <- ctx.Err()
				return ctx.Err()
			}
		case "lane-b":
			close(bHandled)
		}
		return nil
	}, noGiveUp(t), zerolog.Nop())
	startQueue(t, q)
	t.Cleanup(q.Stop)

	a := enqueue(t, db, "lane-a", "a")
	q.Push(a)
	recv(t, aStarted, "lane A's handler to start")
	// Lane A is now blocked until lane B's item is handled.
	b := enqueue(t, db, "lane-b", "b")
	q.Push(b)
	if err := recv(t, aDone, "lane A to be released by lane B"); err != nil {
		t.Fatalf("lane A was not released by lane B: %v", err)
	}
	q.Stop()
	if left := pendingSeqs(t, db); len(left) != 0 {
		t.Errorf("items left in database: %v", left)
	}
}

func TestQueueRetry(t *testing.T) {
	tests := []struct {
		name        string
		failures    int // how many times the handler fails before succeeding
		maxAttempts int
		wantGiveUp  bool
	}{
		{"succeeds first time", 0, 5, false},
		{"succeeds on second attempt", 1, 5, false},
		{"succeeds on last attempt", 4, 5, false},
		{"fails every attempt", 100, 4, true},
		{"single attempt allowed", 100, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openTestDB(t)
			var mu sync.Mutex
			var calls int
			var storedAttempts []int
			var retried []bool
			done := make(chan struct{}, 1)
			wantCalls := min(tt.failures+1, tt.maxAttempts)
			giveUps := make(chan error, 10)
			q := New(db, func(ctx context.Context, it database.QueueItem) error {
				mu.Lock()
				defer mu.Unlock()
				calls++
				retried = append(retried, it.Retried)
				// The attempt count recorded in the database before this attempt.
				items, err := db.PendingQueue(ctx)
				if err == nil && len(items) == 1 {
					storedAttempts = append(storedAttempts, items[0].Attempts)
				}
				if calls == wantCalls {
					done <- struct{}{}
				}
				if calls <= tt.failures {
					return fmt.Errorf("transient failure %d", calls)
				}
				return nil
			}, func(ctx context.Context, it database.QueueItem, err error) {
				giveUps <- err
			}, zerolog.Nop())
			startQueue(t, q)
			q.Backoff = time.Millisecond
			q.MaxAttempts = tt.maxAttempts
			t.Cleanup(q.Stop)

			q.Push(enqueue(t, db, "k", "x"))
			recv(t, done, "the last expected attempt")
			var gave []error
			if tt.wantGiveUp {
				// Stopping before the failure is recorded would leave the item for the
				// next start, so wait for the give-up itself.
				gave = append(gave, recv(t, giveUps, "give-up"))
			}
			q.Stop() // waits for the lane to finish the item

			mu.Lock()
			defer mu.Unlock()
			if calls != wantCalls {
				t.Errorf("handler called %d times, want %d", calls, wantCalls)
			}
			wantStored := make([]int, wantCalls)
			for i := range wantStored {
				wantStored[i] = i
			}
			if !slices.Equal(storedAttempts, wantStored) {
				t.Errorf("attempts recorded before each call = %v, want %v", storedAttempts, wantStored)
			}
			// Only the first attempt is known to have had no effect before it.
			wantRetried := make([]bool, wantCalls)
			for i := 1; i < wantCalls; i++ {
				wantRetried[i] = true
			}
			if !slices.Equal(retried, wantRetried) {
				t.Errorf("items marked retried per call = %v, want %v", retried, wantRetried)
			}
			close(giveUps)
			for err := range giveUps {
				gave = append(gave, err)
			}
			if tt.wantGiveUp {
				if len(gave) != 1 {
					t.Errorf("giveUp called %d times, want exactly once", len(gave))
				} else if gave[0] == nil || gave[0].Error() != fmt.Sprintf("transient failure %d", wantCalls) {
					t.Errorf("giveUp got %v, want the last failure", gave[0])
				}
			} else if len(gave) != 0 {
				t.Errorf("giveUp called %d times for an item that succeeded", len(gave))
			}
			if left := pendingSeqs(t, db); len(left) != 0 {
				t.Errorf("item not removed from database: %v", left)
			}
		})
	}
}

func TestQueuePermanentErrorGivesUpAtOnce(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"wrapped ErrPermanent", fmt.Errorf("%w: cannot decode", ErrPermanent)},
		{"refused by the retry policy", errNotRetryable},
		{"doubly wrapped", fmt.Errorf("sending: %w", fmt.Errorf("%w: nope", ErrPermanent))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openTestDB(t)
			calls := make(chan struct{}, 10)
			giveUps := make(chan error, 10)
			q := New(db, func(ctx context.Context, it database.QueueItem) error {
				calls <- struct{}{}
				return tt.err
			}, func(ctx context.Context, it database.QueueItem, err error) {
				giveUps <- err
			}, zerolog.Nop())
			q.Retryable = func(err error) bool { return !errors.Is(err, errNotRetryable) }
			startQueue(t, q)
			q.Backoff = time.Millisecond
			t.Cleanup(q.Stop)

			q.Push(enqueue(t, db, "k", "x"))
			if err := recv(t, giveUps, "give-up"); !errors.Is(err, tt.err) {
				t.Errorf("giveUp got %v, want %v", err, tt.err)
			}
			q.Stop()
			if n := len(calls); n != 1 {
				t.Errorf("handler called %d times, want 1", n)
			}
			if n := len(giveUps); n != 0 {
				t.Errorf("giveUp called %d extra times", n)
			}
			if left := pendingSeqs(t, db); len(left) != 0 {
				t.Errorf("item not removed from database: %v", left)
			}
		})
	}
}

func TestQueueStopAndResume(t *testing.T) {
	db := openTestDB(t)
	started := make(chan struct{})
	var firstSeen []string
	q1 := New(db, func(ctx context.Context, it database.QueueItem) error {
		firstSeen = append(firstSeen, string(it.Payload))
		close(started)
		<-ctx.Done() // still working when the bridge shuts down
		return ctx.Err()
	}, noGiveUp(t), zerolog.Nop())
	startQueue(t, q1)

	var items []database.QueueItem
	for i := range 3 {
		items = append(items, enqueue(t, db, "room-a", fmt.Sprintf("a%d", i)))
	}
	items = append(items, enqueue(t, db, "room-b", "b0"))
	// Only room-a's items are pushed: room-b's item is stored but was never picked up
	// (as after a crash between storing and pushing).
	q1.Push(items[:3]...)
	recv(t, started, "first handler call")
	q1.Stop()
	q1.Push(items[3]) // a stopped queue takes no work

	if !slices.Equal(firstSeen, []string{"a0"}) {
		t.Errorf("first queue handled %v, want only a0", firstSeen)
	}
	if left := pendingSeqs(t, db); len(left) != 4 {
		t.Fatalf("after Stop %d items left in database, want 4", len(left))
	}

	handled := make(chan database.QueueItem, 10)
	q2 := New(db, func(ctx context.Context, it database.QueueItem) error {
		handled <- it
		return nil
	}, noGiveUp(t), zerolog.Nop())
	t.Cleanup(q2.Stop)
	if err := q2.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for range 4 {
		it := recv(t, handled, "resumed item")
		if !it.Resumed {
			t.Errorf("item %d: Resumed = false after Resume", it.Seq)
		}
		got[it.Key] = append(got[it.Key], string(it.Payload))
	}
	if !slices.Equal(got["room-a"], []string{"a0", "a1", "a2"}) || !slices.Equal(got["room-b"], []string{"b0"}) {
		t.Errorf("resumed handling = %v", got)
	}
	q2.Stop()
	if left := pendingSeqs(t, db); len(left) != 0 {
		t.Errorf("items left after resume: %v", left)
	}
}

func TestQueueResumedAttemptsCount(t *testing.T) {
	// An item that already used up its attempts before a restart gets one more try,
	// then is given up on: attempts survive restarts.
	db := openTestDB(t)
	it := enqueue(t, db, "k", "x")
	for range 3 {
		if _, err := db.IncrementAttempts(context.Background(), it.Seq); err != nil {
			t.Fatal(err)
		}
	}
	calls := make(chan int, 10)
	giveUps := make(chan error, 10)
	q := New(db, func(ctx context.Context, it database.QueueItem) error {
		calls <- it.Attempts
		return errors.New("still failing")
	}, func(ctx context.Context, it database.QueueItem, err error) {
		giveUps <- err
	}, zerolog.Nop())
	startQueue(t, q)
	q.Backoff = time.Millisecond
	q.MaxAttempts = 4
	t.Cleanup(q.Stop)
	if err := q.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	recv(t, giveUps, "give-up")
	q.Stop()
	if n := len(calls); n != 1 {
		t.Errorf("handler called %d times, want 1 (attempt 4 of 4)", n)
	}
	if left := pendingSeqs(t, db); len(left) != 0 {
		t.Errorf("item not removed: %v", left)
	}
}

// startQueue lets a test queue take pushed items (as Resume does at start-up).
func startQueue(t *testing.T, q *Queue) {
	t.Helper()
	if err := q.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	q.StopGrace = 10 * time.Millisecond
}

// TestQueueResumeComesFirst: events pushed while the bridge is still starting wait,
// so older unfinished events are handled before them, in order.
func TestQueueResumeComesFirst(t *testing.T) {
	db := openTestDB(t)
	handled := make(chan database.QueueItem, 10)
	old := enqueue(t, db, "room", "old")
	q := New(db, func(ctx context.Context, it database.QueueItem) error {
		handled <- it
		return nil
	}, noGiveUp(t), zerolog.Nop())
	t.Cleanup(q.Stop)
	live := enqueue(t, db, "room", "live")
	q.Push(live) // arrives before Resume: kept in the database only
	if err := q.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	first, second := recv(t, handled, "first item"), recv(t, handled, "second item")
	if first.Seq != old.Seq || second.Seq != live.Seq {
		t.Fatalf("handled %q then %q, want old then live", first.Payload, second.Payload)
	}
}

// TestQueueHandlerPanic: a panicking handler gives up on that event, once, and the
// queue goes on.
func TestQueueHandlerPanic(t *testing.T) {
	db := openTestDB(t)
	gaveUp := make(chan error, 2)
	handled := make(chan string, 2)
	q := New(db, func(ctx context.Context, it database.QueueItem) error {
		if string(it.Payload) == "bad" {
			var m map[string]int
			m["boom"]++ // nil map write: a panic
		}
		handled <- string(it.Payload)
		return nil
	}, func(ctx context.Context, it database.QueueItem, err error) { gaveUp <- err }, zerolog.Nop())
	startQueue(t, q)
	t.Cleanup(q.Stop)
	q.Push(enqueue(t, db, "room", "bad"), enqueue(t, db, "room", "good"))
	if err := recv(t, gaveUp, "give-up"); !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("give-up error %v does not mention the panic", err)
	}
	if got := recv(t, handled, "next item"); got != "good" {
		t.Fatalf("handled %q after the panic, want good", got)
	}
}

// flakyStore is a real database that can be made to stop answering, as a database
// server does when it restarts or its network goes away.
type flakyStore struct {
	*database.Database
	mu    sync.Mutex
	down  bool
	pings chan struct{} // a value per ping made while down
}

func (s *flakyStore) isDown() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.down }

func (s *flakyStore) setDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

var errDBDown = errors.New("connection refused")

func (s *flakyStore) Ping(ctx context.Context) error {
	if s.isDown() {
		select {
		case s.pings <- struct{}{}:
		default:
		}
		return errDBDown
	}
	return s.Database.Ping(ctx)
}

func (s *flakyStore) CompleteQueueItem(ctx context.Context, seq int64) error {
	if s.isDown() {
		return errDBDown
	}
	return s.Database.CompleteQueueItem(ctx, seq)
}

func (s *flakyStore) IncrementAttempts(ctx context.Context, seq int64) (int, error) {
	if s.isDown() {
		return 0, errDBDown
	}
	return s.Database.IncrementAttempts(ctx, seq)
}

// TestQueueWaitsOutDatabaseOutage: failures while the database does not answer never
// count toward giving an event up, however long the outage; the event is handled once
// the database is back, and leaves the queue.
func TestQueueWaitsOutDatabaseOutage(t *testing.T) {
	store := &flakyStore{Database: openTestDB(t), pings: make(chan struct{}, 1)}
	enqueue(t, store.Database, "matrix:!a:x", "x")
	store.setDown(true)
	handled := make(chan bool, 100)
	q := New(store, func(ctx context.Context, item database.QueueItem) error {
		if store.isDown() {
			handled <- false
			return fmt.Errorf("looking up the portal: %w", errDBDown)
		}
		handled <- item.Retried
		return nil
	}, noGiveUp(t), zerolog.Nop())
	q.MaxAttempts, q.Backoff, q.MaxBackoff = 2, time.Millisecond, 2*time.Millisecond
	if err := q.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Stop)
	if ok := recv(t, handled, "the first attempt"); ok {
		t.Fatal("handled while the database was down")
	}
	// Far more polls than MaxAttempts allows failures.
	for range 10 {
		recv(t, store.pings, "a ping while the database is down")
	}
	store.setDown(false)
	if retried := recv(t, handled, "the attempt once the database is back"); !retried {
		t.Error("the attempt after the outage was not marked as a retry (it may have run in part before)")
	}
	waitFor(t, "the item to leave the database", func() bool { return len(pendingSeqs(t, store.Database)) == 0 })
	if q.Len() != 0 {
		t.Errorf("queue holds %d items", q.Len())
	}
}

// TestQueueGiveUpToldOnlyOnceRemoved: an item given up while the database is down is
// removed before anyone is told it was not bridged — an item reported lost must never
// be sent after a restart.
func TestQueueGiveUpToldOnlyOnceRemoved(t *testing.T) {
	store := &flakyStore{Database: openTestDB(t), pings: make(chan struct{}, 1)}
	it := enqueue(t, store.Database, "matrix:!a:x", "x")
	gaveUp := make(chan []int64, 1)
	q := New(store, func(ctx context.Context, item database.QueueItem) error {
		store.setDown(true) // the database goes away while the handler fails for good
		return fmt.Errorf("%w: refused by the network", ErrPermanent)
	}, func(_ context.Context, item database.QueueItem, err error) {
		gaveUp <- pendingSeqs(t, store.Database)
	}, zerolog.Nop())
	q.Backoff, q.MaxBackoff = time.Millisecond, 2*time.Millisecond
	if err := q.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Stop)
	for range 3 {
		recv(t, store.pings, "a ping while the database is down")
	}
	select {
	case <-gaveUp:
		t.Fatal("the sender was told while the item was still stored")
	default:
	}
	store.setDown(false)
	if left := recv(t, gaveUp, "the give-up"); slices.Contains(left, it.Seq) {
		t.Errorf("told of the give-up while item %d is still stored", it.Seq)
	}
}

// waitFor polls cond until it holds (bounded by testTimeout, which is never asserted on).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAttemptsFor(t *testing.T) {
	for _, tt := range []struct {
		window time.Duration
		want   int
	}{{time.Second, 2}, {3 * time.Second, 3}, {4 * time.Second, 4}, {63 * time.Second, 7}, {64 * time.Second, 8}, {90 * time.Minute, 96}} {
		if got := AttemptsFor(tt.window, time.Second, time.Minute); got != tt.want {
			t.Errorf("AttemptsFor(%v) = %d, want %d", tt.window, got, tt.want)
		}
	}
}

// TestQueueWaitLane: a producer waits while its chat's lane is full, and only that
// lane's: other lanes take items at once; one finished item lets it go on.
func TestQueueWaitLane(t *testing.T) {
	db := openTestDB(t)
	release := make(chan struct{})
	q := New(db, func(ctx context.Context, item database.QueueItem) error {
		if item.Key == "remote:irc|#flood" {
			<-release
		}
		return nil
	}, noGiveUp(t), zerolog.Nop())
	if err := q.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Stop)
	for range 2 {
		q.Push(enqueue(t, db, "remote:irc|#flood", "x"))
	}
	ctx := context.Background()
	if err := q.WaitLane(ctx, "remote:irc|#quiet", 2); err != nil {
		t.Fatalf("another chat's lane waited: %v", err)
	}
	// With its context already over, WaitLane says whether it would have waited.
	over, cancel := context.WithCancel(ctx)
	cancel()
	if err := q.WaitLane(over, "remote:irc|#flood", 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitLane on a full lane returned %v, want it to wait (context.Canceled)", err)
	}
	if err := q.WaitLane(over, "remote:irc|#quiet", 2); err != nil {
		t.Fatalf("WaitLane on a lane with room waited: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- q.WaitLane(ctx, "remote:irc|#flood", 2) }()
	release <- struct{}{}
	if err := recv(t, done, "WaitLane once an item finished"); err != nil {
		t.Fatal(err)
	}
	if n := q.LenKind("matrix"); n != 1 {
		t.Errorf("LenKind(matrix) = %d, want 1 (enqueue stores matrix items; one of two finished)", n)
	}
	close(release)
}
