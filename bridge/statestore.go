package bridge

import (
	"context"
	"sync"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"
)

// stateStore is mautrix's SQL state store with each room's encryption settings held
// in memory: they are asked for on every event sent or received, and change only
// through SetEncryptionEvent (the transaction stream, the bot's own room creation),
// which this type sees. The bridge is the only writer of its state store.
type stateStore struct {
	*sqlstatestore.SQLStateStore
	// encryption maps a room to its m.room.encryption content; a nil value records
	// that the room is known to be clear.
	encryption sync.Map

	// joined remembers each room's joined members, read for every message sent to a
	// network (display names, and telling apart two users who share one); any
	// membership write to a room forgets that room's. gen counts a room's writes, so a
	// read that raced with a write is not remembered.
	mu     sync.Mutex
	joined map[id.RoomID]map[id.UserID]*event.MemberEventContent
	gen    map[id.RoomID]uint64
}

func newStateStore(s *sqlstatestore.SQLStateStore) *stateStore {
	return &stateStore{SQLStateStore: s,
		joined: make(map[id.RoomID]map[id.UserID]*event.MemberEventContent),
		gen:    make(map[id.RoomID]uint64)}
}

// JoinedMembers is GetRoomMembers for joined members, remembered between membership
// writes. The map is shared: callers only read it.
func (s *stateStore) JoinedMembers(ctx context.Context, roomID id.RoomID) (map[id.UserID]*event.MemberEventContent, error) {
	s.mu.Lock()
	members, ok := s.joined[roomID]
	gen := s.gen[roomID]
	s.mu.Unlock()
	if ok {
		return members, nil
	}
	members, err := s.SQLStateStore.GetRoomMembers(ctx, roomID, event.MembershipJoin)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.gen[roomID] == gen {
		s.joined[roomID] = members
	}
	s.mu.Unlock()
	return members, nil
}

// GetMember answers for a joined member from memory when the room's members are
// remembered; anyone else is read from the database.
func (s *stateStore) GetMember(ctx context.Context, roomID id.RoomID, userID id.UserID) (*event.MemberEventContent, error) {
	s.mu.Lock()
	member, ok := s.joined[roomID][userID]
	s.mu.Unlock()
	if ok && member != nil {
		copied := *member // callers may change what they get
		return &copied, nil
	}
	return s.SQLStateStore.GetMember(ctx, roomID, userID)
}

// forget drops what is remembered of a room's members, after a write to them.
func (s *stateStore) forget(roomID id.RoomID) {
	s.mu.Lock()
	delete(s.joined, roomID)
	s.gen[roomID]++
	s.mu.Unlock()
}

// SetMembership stores, then forgets the room's members.
func (s *stateStore) SetMembership(ctx context.Context, roomID id.RoomID, userID id.UserID, membership event.Membership) error {
	defer s.forget(roomID)
	return s.SQLStateStore.SetMembership(ctx, roomID, userID, membership)
}

// SetMember stores, then forgets the room's members.
func (s *stateStore) SetMember(ctx context.Context, roomID id.RoomID, userID id.UserID, member *event.MemberEventContent) error {
	defer s.forget(roomID)
	return s.SQLStateStore.SetMember(ctx, roomID, userID, member)
}

// ReplaceCachedMembers stores, then forgets the room's members.
func (s *stateStore) ReplaceCachedMembers(ctx context.Context, roomID id.RoomID, evts []*event.Event, onlyMemberships ...event.Membership) error {
	defer s.forget(roomID)
	return s.SQLStateStore.ReplaceCachedMembers(ctx, roomID, evts, onlyMemberships...)
}

// ClearCachedMembers clears, then forgets the room's members.
func (s *stateStore) ClearCachedMembers(ctx context.Context, roomID id.RoomID, memberships ...event.Membership) error {
	defer s.forget(roomID)
	return s.SQLStateStore.ClearCachedMembers(ctx, roomID, memberships...)
}

// SetEncryptionEvent stores the room's settings, then remembers them.
func (s *stateStore) SetEncryptionEvent(ctx context.Context, roomID id.RoomID, content *event.EncryptionEventContent) error {
	if err := s.SQLStateStore.SetEncryptionEvent(ctx, roomID, content); err != nil {
		s.encryption.Delete(roomID)
		return err
	}
	s.encryption.Store(roomID, content)
	return nil
}

// GetEncryptionEvent answers from memory after the first read of a room.
func (s *stateStore) GetEncryptionEvent(ctx context.Context, roomID id.RoomID) (*event.EncryptionEventContent, error) {
	if v, ok := s.encryption.Load(roomID); ok {
		return v.(*event.EncryptionEventContent), nil
	}
	content, err := s.SQLStateStore.GetEncryptionEvent(ctx, roomID)
	if err != nil {
		return nil, err
	}
	// A SetEncryptionEvent that ran meanwhile wins over what was read before it.
	v, _ := s.encryption.LoadOrStore(roomID, content)
	return v.(*event.EncryptionEventContent), nil
}

// IsEncrypted is mautrix's definition over the cached settings.
func (s *stateStore) IsEncrypted(ctx context.Context, roomID id.RoomID) (bool, error) {
	cfg, err := s.GetEncryptionEvent(ctx, roomID)
	return cfg != nil && cfg.Algorithm == id.AlgorithmMegolmV1, err
}
