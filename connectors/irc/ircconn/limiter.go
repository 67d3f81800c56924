package ircconn

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// clock abstracts time for the token bucket so tests can add tokens without
// sleeping. The zero value of a Limiter uses the real clock.
type clock interface {
	Now() time.Time
	// Timer returns a channel that receives once d has elapsed and a func that
	// releases the timer early.
	Timer(d time.Duration) (<-chan time.Time, func())
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Timer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// Limiter is a token bucket: it admits perSecond events per second on
// average, with bursts of up to burst events. Waiters are served in the order
// they called Wait. A nil *Limiter admits everything immediately. A Limiter is
// safe for concurrent use; share one across all connections of a bridge to
// cap the connect rate (Config.ConnectLimiter).
type Limiter struct {
	mu     sync.Mutex
	rate   float64 // tokens per second; <= 0 means unlimited
	burst  float64
	tokens float64 // may go negative: reserved by waiters
	last   time.Time
	clk    clock
}

// NewLimiter returns a Limiter admitting perSecond events per second with
// bursts of up to burst events (burst < 1 is treated as 1). A perSecond <= 0
// disables limiting.
func NewLimiter(perSecond float64, burst int) *Limiter {
	return newLimiterClock(perSecond, burst, realClock{})
}

func newLimiterClock(perSecond float64, burst int, clk clock) *Limiter {
	if burst < 1 {
		burst = 1
	}
	return &Limiter{rate: perSecond, burst: float64(burst), tokens: float64(burst), last: clk.Now(), clk: clk}
}

// Wait blocks until a token is available or ctx is done. It returns a wrapped
// ctx.Err() in the latter case, and the reserved token is given back.
func (l *Limiter) Wait(ctx context.Context) error {
	if l == nil {
		return ctx.Err()
	}
	wait := l.reserve()
	if wait <= 0 {
		return nil
	}
	ch, stop := l.clk.Timer(wait)
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		stop()
		l.mu.Lock()
		l.tokens++
		l.mu.Unlock()
		return fmt.Errorf("ircconn: waiting for rate limiter: %w", ctx.Err())
	}
}

// reserve takes one token (possibly going into debt) and returns how long the
// caller must wait before its token is due.
func (l *Limiter) reserve() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rate <= 0 {
		return 0
	}
	now := l.clk.Now()
	if elapsed := now.Sub(l.last); elapsed > 0 {
		l.tokens += elapsed.Seconds() * l.rate
		if l.tokens > l.burst {
			l.tokens = l.burst
		}
		l.last = now
	}
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second))
}
