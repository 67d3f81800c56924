package harness

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// syncFilter is sent inline with every /sync: a generous timeline limit so a burst
// of events between two polls is not cut short ("limited").
const syncFilter = `{"room":{"timeline":{"limit":500}}}`

// syncTimeout is the long-poll timeout of each /sync request, in milliseconds.
const syncTimeout = 10000

// User is a logged-in Matrix account with a background /sync loop that records, per
// room and in arrival order, every state, timeline and ephemeral event it is sent,
// and every invite. The embedded client can be used freely while the loop runs.
type User struct {
	*mautrix.Client

	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	// changed is closed and replaced whenever something is recorded.
	changed     chan struct{}
	rooms       map[id.RoomID]*roomLog
	invites     []Invite
	invitedSeen map[id.RoomID]bool
	syncs       int
	lastSyncErr error
}

// Invite is an invitation seen in /sync.
type Invite struct {
	RoomID  id.RoomID
	Inviter id.UserID
	// State is the stripped state the homeserver sent with the invite.
	State []*event.Event
}

// roomLog is what was recorded for one room.
type roomLog struct {
	events []*event.Event
	seen   map[id.EventID]bool
}

// NewUser wraps a logged-in client (UserID and AccessToken set) and starts its /sync
// recorder. Close stops it.
func NewUser(cli *mautrix.Client) *User {
	ctx, cancel := context.WithCancel(context.Background())
	u := &User{
		Client:      cli,
		cancel:      cancel,
		done:        make(chan struct{}),
		changed:     make(chan struct{}),
		rooms:       make(map[id.RoomID]*roomLog),
		invitedSeen: make(map[id.RoomID]bool),
	}
	go u.syncLoop(ctx)
	return u
}

// Close stops the /sync loop and waits for it to end. The client stays usable.
func (u *User) Close() {
	u.cancel()
	<-u.done
}

// syncLoop polls /sync until ctx ends, retrying failures with a capped backoff.
func (u *User) syncLoop(ctx context.Context) {
	defer close(u.done)
	since := ""
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		resp, err := u.Client.FullSyncRequest(ctx, mautrix.ReqSync{
			Timeout:  syncTimeout,
			Since:    since,
			FilterID: syncFilter,
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			u.mu.Lock()
			u.lastSyncErr = err
			u.mu.Unlock()
			_ = sleepCtx(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		u.record(resp)
		since = resp.NextBatch
	}
}

// record stores one /sync response and wakes waiters.
func (u *User) record(resp *mautrix.RespSync) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.syncs++
	u.lastSyncErr = nil
	for roomID, room := range resp.Rooms.Join {
		u.addEvents(roomID, room.State.Events, event.StateEventType)
		u.addEvents(roomID, room.Timeline.Events, event.UnknownEventType)
		u.addEvents(roomID, room.Ephemeral.Events, event.EphemeralEventType)
	}
	for roomID, room := range resp.Rooms.Leave {
		u.addEvents(roomID, room.State.Events, event.StateEventType)
		u.addEvents(roomID, room.Timeline.Events, event.UnknownEventType)
	}
	for roomID, room := range resp.Rooms.Invite {
		inv := Invite{RoomID: roomID}
		for _, evt := range room.State.Events {
			prepareEvent(roomID, evt, event.StateEventType)
			inv.State = append(inv.State, evt)
			if evt.Type == event.StateMember && evt.StateKey != nil && id.UserID(*evt.StateKey) == u.UserID &&
				evt.Content.AsMember().Membership == event.MembershipInvite {
				inv.Inviter = evt.Sender
			}
		}
		// A room stays under "invite" in later syncs only when something changes;
		// record each invitation once per room.
		if !u.invitedSeen[roomID] {
			u.invitedSeen[roomID] = true
			u.invites = append(u.invites, inv)
		}
	}
	close(u.changed)
	u.changed = make(chan struct{})
}

// addEvents appends events not seen before to the room's log. class is the class to
// give the events; UnknownEventType means decide by whether they carry a state key.
func (u *User) addEvents(roomID id.RoomID, evts []*event.Event, class event.TypeClass) {
	if len(evts) == 0 {
		return
	}
	log := u.rooms[roomID]
	if log == nil {
		log = &roomLog{seen: make(map[id.EventID]bool)}
		u.rooms[roomID] = log
	}
	for _, evt := range evts {
		if evt.ID != "" {
			if log.seen[evt.ID] {
				continue
			}
			log.seen[evt.ID] = true
		}
		prepareEvent(roomID, evt, class)
		log.events = append(log.events, evt)
	}
}

// prepareEvent fills in what /sync leaves implicit (room ID, type class) and parses
// the content so Content.AsMessage() and friends work. Parse errors are ignored:
// the raw content stays available.
func prepareEvent(roomID id.RoomID, evt *event.Event, class event.TypeClass) {
	evt.RoomID = roomID
	if class == event.UnknownEventType {
		class = event.MessageEventType
		if evt.StateKey != nil {
			class = event.StateEventType
		}
	}
	evt.Type.Class = class
	_ = evt.Content.ParseRaw(evt.Type)
}

// Events returns a snapshot of everything recorded for the room, in the order it was
// received (state before the timeline of the same sync, then ephemeral events).
func (u *User) Events(roomID id.RoomID) []*event.Event {
	u.mu.Lock()
	defer u.mu.Unlock()
	if log := u.rooms[roomID]; log != nil {
		return append([]*event.Event(nil), log.events...)
	}
	return nil
}

// Invites returns a snapshot of the invitations recorded so far, oldest first.
func (u *User) Invites() []Invite {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Invite(nil), u.invites...)
}

// WaitEvent returns the first event recorded in roomID, including ones recorded before
// the call, for which match returns true. It blocks until one arrives or ctx ends; the
// timeout error summarises what the room did receive.
func (u *User) WaitEvent(ctx context.Context, roomID id.RoomID, match func(*event.Event) bool) (*event.Event, error) {
	for {
		u.mu.Lock()
		if log := u.rooms[roomID]; log != nil {
			for _, evt := range log.events {
				if match(evt) {
					u.mu.Unlock()
					return evt, nil
				}
			}
		}
		changed := u.changed
		u.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("%s waiting for an event in %s: %w; %s", u.UserID, roomID, ctx.Err(), u.roomSummary(roomID))
		}
	}
}

// WaitAnyEvent is WaitEvent over every room the user sees: it returns the first
// recorded event for which match returns true, and its room. Rooms the bridge creates
// and joins the user to (double puppeting) are found this way.
func (u *User) WaitAnyEvent(ctx context.Context, match func(roomID id.RoomID, evt *event.Event) bool) (id.RoomID, *event.Event, error) {
	for {
		u.mu.Lock()
		for roomID, log := range u.rooms {
			for _, evt := range log.events {
				if match(roomID, evt) {
					u.mu.Unlock()
					return roomID, evt, nil
				}
			}
		}
		changed := u.changed
		u.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return "", nil, fmt.Errorf("%s waiting for an event in any room: %w", u.UserID, ctx.Err())
		}
	}
}

// WaitInvite returns the room of the first recorded invitation, including ones
// recorded before the call, for which match returns true (nil matches any). It blocks
// until one arrives or ctx ends.
func (u *User) WaitInvite(ctx context.Context, match func(roomID id.RoomID, inviter id.UserID) bool) (id.RoomID, error) {
	for {
		u.mu.Lock()
		for _, inv := range u.invites {
			if match == nil || match(inv.RoomID, inv.Inviter) {
				u.mu.Unlock()
				return inv.RoomID, nil
			}
		}
		changed := u.changed
		u.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("%s waiting for an invite: %w; %s", u.UserID, ctx.Err(), u.inviteSummary())
		}
	}
}

// JoinAndWait joins a room by ID or alias and waits until the user's own join shows
// up in its /sync, so later WaitEvent calls see the room. It returns the room ID.
func (u *User) JoinAndWait(ctx context.Context, roomIDOrAlias string) (id.RoomID, error) {
	resp, err := u.JoinRoom(ctx, roomIDOrAlias, nil)
	if err != nil {
		return "", fmt.Errorf("%s joining %s: %w", u.UserID, roomIDOrAlias, err)
	}
	_, err = u.WaitEvent(ctx, resp.RoomID, func(evt *event.Event) bool {
		return evt.Type == event.StateMember && evt.StateKey != nil && id.UserID(*evt.StateKey) == u.UserID &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	if err != nil {
		return "", fmt.Errorf("joined %s but the join did not come down /sync: %w", roomIDOrAlias, err)
	}
	return resp.RoomID, nil
}

// roomSummary describes what was recorded for a room, for timeout errors: the last
// 30 events as "type sender body".
func (u *User) roomSummary(roomID id.RoomID) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "after %d syncs", u.syncs)
	if u.lastSyncErr != nil {
		fmt.Fprintf(&b, " (last sync error: %v)", u.lastSyncErr)
	}
	log := u.rooms[roomID]
	if log == nil || len(log.events) == 0 {
		b.WriteString(" the room received nothing")
		return b.String()
	}
	evts := log.events
	fmt.Fprintf(&b, " the room received %d events", len(evts))
	if len(evts) > 30 {
		evts = evts[len(evts)-30:]
		b.WriteString(", the last 30")
	}
	b.WriteString(":")
	for _, evt := range evts {
		b.WriteString("\n  ")
		b.WriteString(DescribeEvent(evt))
	}
	return b.String()
}

// inviteSummary lists recorded invitations, for timeout errors.
func (u *User) inviteSummary() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "after %d syncs", u.syncs)
	if u.lastSyncErr != nil {
		fmt.Fprintf(&b, " (last sync error: %v)", u.lastSyncErr)
	}
	fmt.Fprintf(&b, " %d invites were received", len(u.invites))
	for _, inv := range u.invites {
		fmt.Fprintf(&b, "\n  %s from %s", inv.RoomID, inv.Inviter)
	}
	return b.String()
}

// DescribeEvent is a one-line summary of an event: type, state key, sender and a
// truncated body or membership.
func DescribeEvent(evt *event.Event) string {
	var b strings.Builder
	b.WriteString(evt.Type.Type)
	if evt.StateKey != nil {
		fmt.Fprintf(&b, "[%s]", *evt.StateKey)
	}
	if evt.Sender != "" {
		fmt.Fprintf(&b, " from %s", evt.Sender)
	}
	switch c := evt.Content.Parsed.(type) {
	case *event.MessageEventContent:
		fmt.Fprintf(&b, " %s %q", c.MsgType, truncate(c.Body, 80))
	case *event.MemberEventContent:
		fmt.Fprintf(&b, " %s", c.Membership)
	default:
		if evt.Content.Parsed == nil && len(evt.Content.VeryRaw) > 0 {
			fmt.Fprintf(&b, " %s", truncate(string(evt.Content.VeryRaw), 80))
		}
	}
	return b.String()
}

// truncate shortens s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// TextFrom matches m.room.message events from sender whose body is body.
func TextFrom(sender id.UserID, body string) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.Type != event.EventMessage || evt.Sender != sender {
			return false
		}
		msg := evt.Content.AsMessage()
		return msg != nil && msg.Body == body
	}
}

// Membership matches a membership event of user; an empty membership matches any.
func Membership(user id.UserID, membership event.Membership) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		return evt.Type == event.StateMember && evt.GetStateKey() == user.String() &&
			(membership == "" || evt.Content.AsMember().Membership == membership)
	}
}
