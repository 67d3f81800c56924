package bridge

// Creation limits: what traffic from a network may make the bridge create on Matrix
// (direct-chat rooms, ghost accounts), per remote sender, login or chat.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/passerelle/passerelle/bridge/config"
)

// maxLimiterKeys bounds each keyed limiter's memory; a flood of distinct senders must
// not grow it without end.
const maxLimiterKeys = 10000

// keyedLimiter holds a token bucket per key (a sender, a chat).
type keyedLimiter struct {
	every   rate.Limit
	burst   int
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// newKeyedLimiter allows perHour an hour, with a burst of as many (0: no limit).
func newKeyedLimiter(perHour int) *keyedLimiter {
	if perHour <= 0 {
		return &keyedLimiter{}
	}
	return newRateLimiter(rate.Every(time.Hour/time.Duration(perHour)), perHour)
}

// newRateLimiter allows r a second with a burst of burst (r 0: no limit).
func newRateLimiter(r rate.Limit, burst int) *keyedLimiter {
	return &keyedLimiter{every: r, burst: max(burst, 1), buckets: make(map[string]*rate.Limiter)}
}

// get returns key's bucket; nil when there is no limit.
func (l *keyedLimiter) get(key string) *rate.Limiter {
	if l == nil || l.every <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxLimiterKeys {
			l.evictFull()
		}
		b = rate.NewLimiter(l.every, l.burst)
		l.buckets[key] = b
	}
	return b
}

// evictFull forgets buckets that have refilled (forgetting them changes nothing); if
// none has, it forgets all, erring on the side of the senders.
func (l *keyedLimiter) evictFull() {
	now := time.Now()
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxLimiterKeys {
		clear(l.buckets)
	}
}

// allow takes a token from each key's bucket, or from none if any is empty.
func allowAll(now time.Time, buckets ...*rate.Limiter) bool {
	var taken []*rate.Reservation
	for _, b := range buckets {
		if b == nil {
			continue
		}
		r := b.ReserveN(now, 1)
		if !r.OK() || r.DelayFrom(now) > 0 {
			r.CancelAt(now)
			for _, t := range taken {
				t.CancelAt(now)
			}
			return false
		}
		taken = append(taken, r)
	}
	return true
}

// creationLimits are the bridge's limits on what remote traffic creates.
type creationLimits struct {
	dmPerSender *keyedLimiter
	dmPerLogin  *keyedLimiter
	ghostsChat  *keyedLimiter
	lookups     *keyedLimiter
	// told limits the notices about refused rooms to one per sender and hour.
	told *keyedLimiter
}

func newCreationLimits(cfg config.LimitsConfig) *creationLimits {
	return &creationLimits{
		dmPerSender: newKeyedLimiter(cfg.DMRoomsPerSender),
		dmPerLogin:  newKeyedLimiter(cfg.DMRoomsPerLogin),
		ghostsChat:  newKeyedLimiter(cfg.GhostsPerChat),
		lookups:     newKeyedLimiter(cfg.GhostLookups),
		told:        newKeyedLimiter(1),
	}
}

// allowDMRoom says whether sender may open one more direct-chat room for login, and
// whether the user should be told about a refusal (the first one in an hour).
func (l *creationLimits) allowDMRoom(connector, login, sender string) (ok, tell bool) {
	key := connector + "\x00" + login
	if allowAll(time.Now(), l.dmPerSender.get(key+"\x00"+sender), l.dmPerLogin.get(key)) {
		return true, false
	}
	return false, l.told.get(key + "\x00" + sender).Allow()
}

// waitGhost waits for the chat's budget of new ghosts (the chat's lane slows down, the
// others go on); it fails only when ctx ends.
func (l *creationLimits) waitGhost(ctx context.Context, chatKey string) error {
	if b := l.ghostsChat.get(chatKey); b != nil {
		if err := b.Wait(ctx); err != nil {
			return fmt.Errorf("waiting for the chat's budget of new users: %w", err)
		}
	}
	return nil
}

// allowLookup says whether a homeserver profile lookup may register one more ghost.
func (l *creationLimits) allowLookup(connector string) bool {
	b := l.lookups.get(connector)
	return b == nil || b.Allow()
}
