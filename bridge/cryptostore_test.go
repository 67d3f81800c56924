package bridge

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

// TestCryptoStoreMemory: what the crypto store remembers of devices and cross-signing
// keys follows every write (a device's trust changing, a device list replaced, a new
// master key), on both databases, and a caller changing what it got changes nothing
// remembered.
func TestCryptoStoreMemory(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		sql := crypto.NewSQLCryptoStore(db.Database, dbutil.ZeroLogger(zerolog.Nop()), "test_account", "DEVICE", []byte("pickle"))
		if err := sql.DB.Upgrade(ctx); err != nil {
			t.Fatal(err)
		}
		store := newCryptoStore(sql)
		user := id.UserID("@ann:example.org")
		// Keys are 43 characters, as real ones: PostgreSQL keeps them in fixed-width columns.
		master1, master2 := id.Ed25519(strings.Repeat("1", 43)), id.Ed25519(strings.Repeat("2", 43))
		key := id.IdentityKey("curve-key-of-ann")
		if d, err := store.FindDeviceByKey(ctx, user, key); err != nil || d != nil {
			t.Fatalf("unknown device: %v, %v", d, err)
		}
		dev := &id.Device{UserID: user, DeviceID: "ANNPHONE", IdentityKey: key, SigningKey: "ed-key-of-ann", Name: "phone"}
		if err := store.PutDevices(ctx, user, map[id.DeviceID]*id.Device{dev.DeviceID: dev}); err != nil {
			t.Fatal(err)
		}
		got, err := store.FindDeviceByKey(ctx, user, key)
		if err != nil || got == nil || got.DeviceID != "ANNPHONE" || got.Trust != id.TrustStateUnset {
			t.Fatalf("after the device list: %+v, %v", got, err)
		}
		got.Name = "changed by a caller"
		verified := *dev
		verified.Trust = id.TrustStateVerified
		if err = store.PutDevice(ctx, user, &verified); err != nil {
			t.Fatal(err)
		}
		if got, err = store.FindDeviceByKey(ctx, user, key); err != nil || got.Trust != id.TrustStateVerified || got.Name != "phone" {
			t.Fatalf("after verifying: %+v, %v", got, err)
		}

		if keys, err := store.GetCrossSigningKeys(ctx, user); err != nil || len(keys) != 0 {
			t.Fatalf("no cross-signing keys yet: %v, %v", keys, err)
		}
		if err = store.PutCrossSigningKey(ctx, user, id.XSUsageMaster, master1); err != nil {
			t.Fatal(err)
		}
		keys, err := store.GetCrossSigningKeys(ctx, user)
		if err != nil || keys[id.XSUsageMaster].Key != master1 {
			t.Fatalf("after the master key: %v, %v", keys, err)
		}
		delete(keys, id.XSUsageMaster)
		if err = store.PutCrossSigningKey(ctx, user, id.XSUsageMaster, master2); err != nil {
			t.Fatal(err)
		}
		if keys, err = store.GetCrossSigningKeys(ctx, user); err != nil || keys[id.XSUsageMaster].Key != master2 || keys[id.XSUsageMaster].First != master1 {
			t.Fatalf("after a new master key: %v, %v", keys, err)
		}
	})
}
