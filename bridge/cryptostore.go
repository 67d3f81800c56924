package bridge

import (
	"context"
	"maps"
	"sync"

	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/id"
)

// cryptoStore is mautrix's SQL crypto store with the two answers every received
// encrypted message asks for held in memory: the sender's device by identity key and
// the sender's cross-signing keys (the message's trust is resolved from both). They
// change only through the store's own writes (device-list updates, cross-signing
// keys), which this type sees and which empty the memory; the bridge is the store's
// only writer.
type cryptoStore struct {
	*crypto.SQLCryptoStore

	mu sync.Mutex
	// gen counts the writes; an answer read from the database is remembered only when
	// no write happened while it was read, so a stale answer never outlives a write.
	gen          uint64
	deviceByKey  map[deviceKey]*id.Device
	crossSigning map[id.UserID]map[id.CrossSigningUsage]id.CrossSigningKey
}

type deviceKey struct {
	user id.UserID
	key  id.IdentityKey
}

// cachedDevicesPerStore bounds what is remembered; past it the memory starts afresh
// (one database read per sender then refills it).
const cachedDevicesPerStore = 10000

func newCryptoStore(s *crypto.SQLCryptoStore) *cryptoStore {
	return &cryptoStore{SQLCryptoStore: s,
		deviceByKey:  map[deviceKey]*id.Device{},
		crossSigning: map[id.UserID]map[id.CrossSigningUsage]id.CrossSigningKey{}}
}

// forget empties the memory after a write.
func (s *cryptoStore) forget() {
	s.mu.Lock()
	s.gen++
	clear(s.deviceByKey)
	clear(s.crossSigning)
	s.mu.Unlock()
}

// FindDeviceByKey answers from memory after the first read. A copy is returned, so a
// caller that changes it changes nothing remembered.
func (s *cryptoStore) FindDeviceByKey(ctx context.Context, userID id.UserID, identityKey id.IdentityKey) (*id.Device, error) {
	k := deviceKey{userID, identityKey}
	s.mu.Lock()
	d, ok := s.deviceByKey[k]
	gen := s.gen
	s.mu.Unlock()
	if !ok {
		var err error
		if d, err = s.SQLCryptoStore.FindDeviceByKey(ctx, userID, identityKey); err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.gen == gen {
			if len(s.deviceByKey) >= cachedDevicesPerStore {
				clear(s.deviceByKey)
			}
			s.deviceByKey[k] = d
		}
		s.mu.Unlock()
	}
	if d == nil {
		return nil, nil
	}
	c := *d
	return &c, nil
}

// GetCrossSigningKeys answers from memory after the first read, with a copy.
func (s *cryptoStore) GetCrossSigningKeys(ctx context.Context, userID id.UserID) (map[id.CrossSigningUsage]id.CrossSigningKey, error) {
	s.mu.Lock()
	keys, ok := s.crossSigning[userID]
	gen := s.gen
	s.mu.Unlock()
	if !ok {
		var err error
		if keys, err = s.SQLCryptoStore.GetCrossSigningKeys(ctx, userID); err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.gen == gen {
			if len(s.crossSigning) >= cachedDevicesPerStore {
				clear(s.crossSigning)
			}
			s.crossSigning[userID] = keys
		}
		s.mu.Unlock()
	}
	return maps.Clone(keys), nil
}

// PutDevice writes through and empties the memory.
func (s *cryptoStore) PutDevice(ctx context.Context, userID id.UserID, device *id.Device) error {
	defer s.forget()
	return s.SQLCryptoStore.PutDevice(ctx, userID, device)
}

// PutDevices writes through and empties the memory.
func (s *cryptoStore) PutDevices(ctx context.Context, userID id.UserID, devices map[id.DeviceID]*id.Device) error {
	defer s.forget()
	return s.SQLCryptoStore.PutDevices(ctx, userID, devices)
}

// PutCrossSigningKey writes through and empties the memory.
func (s *cryptoStore) PutCrossSigningKey(ctx context.Context, userID id.UserID, usage id.CrossSigningUsage, key id.Ed25519) error {
	defer s.forget()
	return s.SQLCryptoStore.PutCrossSigningKey(ctx, userID, usage, key)
}
