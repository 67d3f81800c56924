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
}

func newStateStore(s *sqlstatestore.SQLStateStore) *stateStore {
	return &stateStore{SQLStateStore: s}
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
