package whatsapp

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/types"

	"github.com/passerelle/passerelle/bridge/database"
)

const defaultPostgresAdmin = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// freshPostgres creates passerelle_wa_<random> and drops it when the test ends. An
// unreachable server fails the test: the PostgreSQL store must not go untested silently.
func freshPostgres(t *testing.T) string {
	t.Helper()
	adminURI := defaultPostgresAdmin
	if v := os.Getenv("PASSERELLE_TEST_POSTGRES"); v != "" {
		adminURI = v
	}
	u, err := url.Parse(adminURI)
	if err != nil {
		t.Fatalf("parsing PostgreSQL admin URI: %v", err)
	}
	shown := u.Redacted()
	admin, err := sql.Open("postgres", adminURI)
	if err != nil {
		t.Fatalf("PostgreSQL admin URI %q unusable (set PASSERELLE_TEST_POSTGRES): %v", shown, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err = admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		t.Fatalf("PostgreSQL unreachable at %q (start it, or point PASSERELLE_TEST_POSTGRES at a server where the user may CREATE DATABASE): %v", shown, err)
	}
	buf := make([]byte, 6)
	_, _ = rand.Read(buf)
	name := "passerelle_wa_" + hex.EncodeToString(buf)
	if _, err = admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		t.Fatalf("creating PostgreSQL database %s: %v", name, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			if _, err2 := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err2 != nil {
				t.Errorf("dropping PostgreSQL database %s: %v / %v", name, err, err2)
			}
		}
	})
	u.Path = "/" + name
	return u.String()
}

func TestOpenContainer(t *testing.T) {
	backends := []struct {
		name string
		uri  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "bridge.db") }},
		{"postgres", freshPostgres},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db, err := database.Open(ctx, b.name, b.uri(t), 0, zerolog.Nop())
			if err != nil {
				t.Fatalf("database.Open: %v", err)
			}
			t.Cleanup(func() { _ = db.Close() })

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
}
