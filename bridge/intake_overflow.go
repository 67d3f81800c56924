package bridge

// Room overflow, on Matrix's side: a room whose events wait past
// bridge.max_queue_per_chat (its network takes them slower than its members send — a
// busy room plumbed to an IRC channel with flood control) has what its members say
// counted and dropped instead of stored, and is told how many once it caught up. It
// never fills bridge.max_queue, which would make every transaction get 503 and stall
// every other room.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

// roomOverflow holds the Matrix rooms dropping events.
type roomOverflow struct {
	br      *Bridge
	dropped prometheus.Counter
	// notify tells a room how many of its events were dropped.
	notify func(ctx context.Context, roomID id.RoomID, text string)
	mu     sync.Mutex
	rooms  map[id.RoomID]*roomOverflowState
}

type roomOverflowState struct {
	dropped     int
	since, last time.Time
}

func newRoomOverflow(br *Bridge, dropped prometheus.Counter) *roomOverflow {
	o := &roomOverflow{br: br, dropped: dropped, rooms: make(map[id.RoomID]*roomOverflowState)}
	o.notify = func(ctx context.Context, roomID id.RoomID, text string) {
		content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: "⚠️ " + text}
		if _, err := br.sendEvent(ctx, br.AS.BotIntent(), roomID, event.EventMessage, content, "", time.Time{}); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("Telling a room its messages were dropped failed")
		}
	}
	return o
}

// matrixDroppable says whether a Matrix event may be dropped from a room that stays
// behind: what members say and react (messages, stickers, reactions, encrypted events,
// typing and receipts) may; state and redactions always wait, so the network never
// keeps what someone took back and the room's membership stays true.
func matrixDroppable(evt *event.Event) bool {
	if evt.StateKey != nil {
		return false
	}
	switch evt.Type {
	case event.EventMessage, event.EventSticker, event.EventReaction, event.EventEncrypted, event.EphemeralEventTyping, event.EphemeralEventReceipt:
		return true
	}
	return false
}

// admit keeps the items of a transaction its rooms have room for: an item that may be
// dropped (droppable[i]) is counted instead when its room is dropping already or holds
// bridge.max_queue_per_chat events with those admitted before it.
func (o *roomOverflow) admit(log zerolog.Logger, items []database.TxnItem, rooms []id.RoomID, droppable []bool) []database.TxnItem {
	limit := o.br.Config.Bridge.MaxQueuePerChat
	kept := items[:0]
	pending := map[string]int{}
	for i, it := range items {
		if droppable[i] && o.shed(log, rooms[i], it.Key, pending[it.Key], limit) {
			continue
		}
		pending[it.Key]++
		kept = append(kept, it)
	}
	return kept
}

// shed counts and says true for an event of a room that is dropping, or whose lane is
// full with pending events of this transaction.
func (o *roomOverflow) shed(log zerolog.Logger, roomID id.RoomID, key string, pending, limit int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	if st := o.rooms[roomID]; st != nil {
		st.dropped++
		st.last = now
		o.dropped.Inc()
		return true
	}
	if o.br.queue.LaneLen(key)+pending < limit {
		return false
	}
	log.Warn().Stringer("room_id", roomID).Int("queued", limit).
		Msg("A room holds bridge.max_queue_per_chat events already; dropping what its members say until it catches up")
	st := &roomOverflowState{dropped: 1, since: now, last: now}
	o.rooms[roomID] = st
	o.dropped.Inc()
	o.br.bgWG.Add(1)
	go func() {
		defer o.br.bgWG.Done()
		o.tellWhenCaughtUp(roomID, key, st)
	}()
	return true
}

// tellWhenCaughtUp waits until the room's lane is down to half its cap and a second
// went by without a dropped event, then lets the room's events in again and tells the
// room how many were dropped.
func (o *roomOverflow) tellWhenCaughtUp(roomID id.RoomID, key string, st *roomOverflowState) {
	ctx := o.br.bgCtx
	log := o.br.Log.With().Stringer("room_id", roomID).Logger()
	ctx = log.WithContext(ctx)
	n := o.br.waitCaughtUp(ctx, key, func() (time.Duration, int) {
		o.mu.Lock()
		defer o.mu.Unlock()
		quiet := time.Since(st.last)
		if quiet < time.Second {
			return quiet, 0
		}
		delete(o.rooms, roomID)
		return quiet, st.dropped
	})
	if n == 0 {
		log.Warn().Msg("Stopping while a room was dropping events; it is not told how many")
		return
	}
	log.Warn().Int("dropped", n).Msg("A room caught up after dropping events; it is told")
	o.notify(ctx, roomID, fmt.Sprintf(
		"%d messages sent here between %s and %s (UTC) were not bridged: this room sent them faster than the network takes them.",
		n, st.since.UTC().Format("15:04:05"), time.Now().UTC().Format("15:04:05")))
}
