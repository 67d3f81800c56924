package bridge

// Chat overflow, for networks that keep no history and cut off slow readers (IRC): a
// chat whose queue stays full has its further events counted and dropped, so the one
// connection every chat of the network shares keeps being read, and its room is told
// how many were dropped once it has caught up.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"maunium.net/go/mautrix/event"
)

// chatOverflow holds the chats that are dropping events.
type chatOverflow struct {
	br *Bridge
	// rate bounds each chat's events a second: a flood is dropped as fast as it is
	// read, so the connection it shares with other chats keeps being read too, even
	// when storing (not the homeserver) is what cannot keep up.
	rate  *keyedLimiter
	mu    sync.Mutex
	chats map[string]*overflowState
}

type overflowState struct {
	dropped int
	since   time.Time
	// last is when the latest event was dropped: the chat has caught up once a second
	// went by without one, with its queue down to half.
	last time.Time
	// flushing is set once the chat caught up and its notice is being stored; events
	// then wait for done, so none overtakes the notice.
	flushing bool
	done     chan struct{}
}

func newChatOverflow(br *Bridge) *chatOverflow {
	return &chatOverflow{br: br, chats: make(map[string]*overflowState),
		rate: newRateLimiter(rate.Limit(br.Config.Bridge.MaxChatRate), int(math.Ceil(5*br.Config.Bridge.MaxChatRate)))}
}

// shed says whether an event of a chat on a network that cuts off slow readers is to
// be dropped (and counts it): its chat is dropping already, sends past
// bridge.max_chat_rate, or holds bridge.max_queue_per_chat events. Waiting is not an
// option there: the chat's queue is the buffer.
func (o *chatOverflow) shed(ctx context.Context, ch *connectorHost, evt *RemoteEvent, key string) bool {
	if o.drop(ctx, key) {
		return true
	}
	cfg := o.br.Config.Bridge
	if b := o.rate.get(key); b != nil && !b.Allow() {
		ch.log.Warn().Object("portal", evt.Chat).Float64("per_second", cfg.MaxChatRate).
			Msg("A chat sends faster than bridge.max_chat_rate; dropping its events until it calms down")
		o.start(ch, evt.Chat, key)
		return true
	}
	if o.br.queue.LaneLen(key) >= cfg.MaxQueuePerChat {
		ch.log.Warn().Object("portal", evt.Chat).Int("queued", cfg.MaxQueuePerChat).
			Msg("A chat holds bridge.max_queue_per_chat events already; dropping its events until it catches up")
		o.start(ch, evt.Chat, key)
		return true
	}
	return false
}

// drop counts an event of a chat that is dropping and says true; false for a chat that
// is not (waiting first, if the chat's notice is being stored).
func (o *chatOverflow) drop(ctx context.Context, key string) bool {
	o.mu.Lock()
	st := o.chats[key]
	if st == nil {
		o.mu.Unlock()
		return false
	}
	if !st.flushing {
		st.dropped++
		st.last = time.Now()
		o.mu.Unlock()
		o.br.metrics.remoteDropped.Inc()
		return true
	}
	done := st.done
	o.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return false
}

// start marks a chat as dropping, the event that found its queue full (or its rate
// spent) counted, and watches for it to catch up.
func (o *chatOverflow) start(ch *connectorHost, chat PortalKey, key string) {
	o.br.metrics.remoteDropped.Inc()
	o.mu.Lock()
	now := time.Now()
	if st := o.chats[key]; st != nil {
		st.dropped++
		st.last = now
		o.mu.Unlock()
		return
	}
	st := &overflowState{dropped: 1, since: now, last: now, done: make(chan struct{})}
	o.chats[key] = st
	o.mu.Unlock()
	o.br.bgWG.Add(1)
	go func() {
		defer o.br.bgWG.Done()
		o.flushWhenCaughtUp(ch, chat, key, st)
	}()
}

// flushWhenCaughtUp waits until the chat's queue is down to half its cap, then stores
// the notice saying how many events were dropped, and lets the chat's events in again.
func (o *chatOverflow) flushWhenCaughtUp(ch *connectorHost, chat PortalKey, key string, st *overflowState) {
	ctx := o.br.bgCtx
	log := ch.log.With().Object("portal", chat).Logger()
	n := o.br.waitCaughtUp(ctx, key, func() (time.Duration, int) {
		o.mu.Lock()
		defer o.mu.Unlock()
		quiet := time.Since(st.last)
		if quiet < time.Second {
			return quiet, 0
		}
		st.flushing = true
		return quiet, st.dropped
	})
	if n == 0 {
		log.Warn().Msg("Stopping while a chat was dropping events; its room is not told how many")
		return
	}
	now := time.Now()
	notice := &RemoteEvent{Type: RemoteMessage, Chat: chat, ID: RemoteMessageID(fmt.Sprintf("passerelle-overflow-%d", now.UnixNano())),
		Timestamp: now, Content: &MessageContent{MsgType: event.MsgNotice, Body: fmt.Sprintf(
			"%d messages of this chat were dropped between %s and %s (UTC): it sent them faster than the bridge could pass them on to Matrix.",
			n, st.since.UTC().Format("15:04:05"), now.UTC().Format("15:04:05"))}}
	payload, err := json.Marshal(notice)
	if err == nil {
		err = ch.store(ctx, key, payload, now, "overflow notice")
	}
	if err != nil {
		log.Error().Err(err).Int("dropped", n).Msg("Storing the notice about dropped events failed")
	} else {
		log.Warn().Int("dropped", n).Msg("A chat caught up after dropping events; its room is told")
	}
	o.mu.Lock()
	delete(o.chats, key)
	close(st.done)
	o.mu.Unlock()
}

// waitCaughtUp waits until a lane that was dropping events is down to half of
// bridge.max_queue_per_chat and a second went by without a dropped event. settle says
// how long ago the last one was dropped and, once that is a second, takes the count
// (under its own lock, so none is counted after). It returns the count, or 0 when the
// bridge stops first.
func (br *Bridge) waitCaughtUp(ctx context.Context, key string, settle func() (quiet time.Duration, dropped int)) int {
	for {
		if err := br.queue.WaitLane(ctx, key, max(br.Config.Bridge.MaxQueuePerChat/2, 1)); err != nil || ctx.Err() != nil {
			return 0
		}
		quiet, n := settle()
		if n > 0 {
			return n
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(time.Second - quiet):
		}
	}
}

// droppable says whether an event may be dropped from a flooding chat: what people
// say and do to messages may, what changes the chat's state (who is in it, its name,
// nick changes, powers) always waits, or the room would drift from the chat.
func (evt *RemoteEvent) droppable() bool {
	switch evt.Type {
	case RemoteMessage, RemoteEdit, RemoteRedaction, RemoteReaction, RemoteUnreaction, RemoteTyping, RemoteReceipt, RemotePresence:
		return true
	}
	return false
}
