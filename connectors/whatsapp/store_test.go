package whatsapp

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

func TestOpenContainer(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		container, err := openContainer(ctx, db.Database, zerolog.Nop())
		if err != nil {
			t.Fatalf("openContainer: %v", err)
		}
		// Opening again (a restart) finds the schema current.
		if _, err = openContainer(ctx, db.Database, zerolog.Nop()); err != nil {
			t.Fatalf("openContainer again: %v", err)
		}

		dev := container.NewDevice()
		jid := types.NewADJID("33612345678", 0, 7)
		dev.ID = &jid
		dev.PushName = "Passerelle test"
		// Pairing fills in the signed device identity; a stored device always has one.
		dev.Account = &waAdv.ADVSignedDeviceIdentity{
			Details:             []byte("details"),
			AccountSignature:    make([]byte, 64),
			AccountSignatureKey: make([]byte, 32),
			DeviceSignature:     make([]byte, 64),
		}
		if err = container.PutDevice(ctx, dev); err != nil {
			t.Fatalf("PutDevice: %v", err)
		}
		all, err := container.GetAllDevices(ctx)
		if err != nil {
			t.Fatalf("GetAllDevices: %v", err)
		}
		if len(all) != 1 || all[0].ID == nil || *all[0].ID != jid {
			t.Fatalf("GetAllDevices = %+v, want one device %s", all, jid)
		}
		got, err := container.GetDevice(ctx, jid)
		if err != nil || got == nil || got.PushName != "Passerelle test" {
			t.Fatalf("GetDevice = %+v, %v", got, err)
		}
		// The core's own schema is untouched next to whatsmeow's.
		var n int
		if err = db.QueryRow(ctx, "SELECT COUNT(*) FROM whatsmeow_version").Scan(&n); err != nil || n != 1 {
			t.Fatalf("whatsmeow_version rows = %d, %v", n, err)
		}
		if err = db.QueryRow(ctx, "SELECT COUNT(*) FROM passerelle_version").Scan(&n); err != nil || n != 1 {
			t.Fatalf("passerelle_version rows = %d, %v", n, err)
		}
	})
}

// TestRealClientBuffersDecryptedEvents: the production client acknowledges a message
// only once it was stored and keeps its plaintext in the session store meanwhile, and
// that buffer (in the bridge's own database, on either backend) outlives a restart: a
// message redelivered after a crash between decryption and storage is found there
// instead of being dropped as one whose keys were already used.
func TestRealClientBuffersDecryptedEvents(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		container, err := openContainer(ctx, db.Database, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		dev := container.NewDevice()
		jid := types.NewADJID("33612345679", 0, 3)
		dev.ID = &jid
		dev.Account = &waAdv.ADVSignedDeviceIdentity{Details: []byte("d"), AccountSignature: make([]byte, 64),
			AccountSignatureKey: make([]byte, 32), DeviceSignature: make([]byte, 64)}
		if err = container.PutDevice(ctx, dev); err != nil {
			t.Fatal(err)
		}
		cli := NewRealClient(dev, waLog.Noop).(*realClient)
		if !cli.SynchronousAck || !cli.EnableDecryptedEventBuffer {
			t.Fatalf("SynchronousAck %v, EnableDecryptedEventBuffer %v: a message could be acknowledged before it is stored",
				cli.SynchronousAck, cli.EnableDecryptedEventBuffer)
		}
		// Decrypted, then the bridge dies before the handler stored the message.
		hash := sha256.Sum256([]byte("ciphertext"))
		err = dev.EventBuffer.DoDecryptionTxn(ctx, func(ctx context.Context) error {
			return dev.EventBuffer.PutBufferedEvent(ctx, hash, []byte("plaintext"), time.Now())
		})
		if err != nil {
			t.Fatal(err)
		}
		// After the restart, the redelivered ciphertext finds its plaintext.
		again, err := openContainer(ctx, db.Database, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		restarted, err := again.GetDevice(ctx, jid)
		if err != nil || restarted == nil {
			t.Fatalf("GetDevice after restart: %v, %v", restarted, err)
		}
		buf, err := restarted.EventBuffer.GetBufferedEvent(ctx, hash)
		if err != nil || buf == nil || string(buf.Plaintext) != "plaintext" {
			t.Fatalf("buffered event after restart = %+v, %v", buf, err)
		}
	})
}
