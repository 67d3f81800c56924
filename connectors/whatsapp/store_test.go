package whatsapp

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/types"

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
