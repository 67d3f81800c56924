package harness_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/tests/harness"
)

// startHomeserver starts Dendrite with a double-puppet registration and returns it
// with the registration's as_token. The homeserver's log tail is printed if the
// test fails.
func startHomeserver(t *testing.T, ctx context.Context) (*harness.Homeserver, string) {
	t.Helper()
	dir := t.TempDir()
	regPath := filepath.Join(dir, "doublepuppet.yaml")
	asToken, err := harness.WriteDoublePuppetRegistration(regPath, harness.DefaultDomain)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := harness.StartDendrite(ctx, filepath.Join(dir, "hs"), []string{regPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hs.Stop()
		if t.Failed() {
			t.Logf("dendrite log tail:\n%s", hs.LogTail(60))
		}
	})
	return hs, asToken
}

func TestDendriteRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	hs, asToken := startHomeserver(t, ctx)

	alice, err := hs.RegisterUser(ctx, "alice", true)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := hs.RegisterUser(ctx, "bob", false)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if alice.UserID != hs.UserID("alice") {
		t.Fatalf("alice's user ID = %s, want %s", alice.UserID, hs.UserID("alice"))
	}

	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		Name:   "harness test",
		Invite: []id.UserID{bob.UserID},
	})
	if err != nil {
		t.Fatalf("creating room: %v", err)
	}

	step := func(d time.Duration) (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, d)
	}
	wctx, wcancel := step(30 * time.Second)
	defer wcancel()
	invited, err := bob.WaitInvite(wctx, func(roomID id.RoomID, inviter id.UserID) bool {
		return roomID == created.RoomID && inviter == alice.UserID
	})
	if err != nil {
		t.Fatal(err)
	}
	joined, err := bob.JoinAndWait(wctx, invited.String())
	if err != nil {
		t.Fatal(err)
	}
	if joined != created.RoomID {
		t.Fatalf("joined %s, want %s", joined, created.RoomID)
	}

	if _, err := alice.SendText(ctx, created.RoomID, "hello from alice"); err != nil {
		t.Fatalf("sending text: %v", err)
	}
	evt, err := bob.WaitEvent(wctx, created.RoomID, harness.TextFrom(alice.UserID, "hello from alice"))
	if err != nil {
		t.Fatal(err)
	}
	if msg := evt.Content.AsMessage(); msg.MsgType != event.MsgText {
		t.Errorf("msgtype = %q, want m.text", msg.MsgType)
	}

	// Double puppeting: the second registration's as_token masquerades as alice.
	puppet, err := hs.NewClient(alice.UserID, asToken)
	if err != nil {
		t.Fatal(err)
	}
	puppet.SetAppServiceUserID = true
	if _, err := puppet.SendText(ctx, created.RoomID, "sent as alice by the appservice"); err != nil {
		t.Fatalf("sending as alice through the double-puppet token: %v", err)
	}
	if _, err := bob.WaitEvent(wctx, created.RoomID, harness.TextFrom(alice.UserID, "sent as alice by the appservice")); err != nil {
		t.Fatal(err)
	}

	// The timeout error names what the room did receive.
	short, scancel := step(300 * time.Millisecond)
	defer scancel()
	_, err = bob.WaitEvent(short, created.RoomID, harness.TextFrom(alice.UserID, "never sent"))
	if err == nil || !strings.Contains(err.Error(), "hello from alice") {
		t.Errorf("timeout error should summarise the room, got: %v", err)
	}
	if n := len(bob.Events(created.RoomID)); n < 3 {
		t.Errorf("bob recorded %d events, want at least 3", n)
	}
}

func TestPostgresDB(t *testing.T) {
	if os.Getenv("PASSERELLE_SKIP_POSTGRES") != "" {
		t.Skip("PASSERELLE_SKIP_POSTGRES is set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	uri, drop, err := harness.NewPostgresDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := uri[strings.LastIndex(uri, "/")+1:]
	if i := strings.IndexByte(name, '?'); i >= 0 {
		name = name[:i]
	}
	if !strings.HasPrefix(name, "passerelle_test_") {
		t.Fatalf("database name %q lacks the passerelle_test_ prefix (uri %s)", name, uri)
	}
	exists, err := harness.PostgresDatabaseExists(ctx, name)
	if err != nil || !exists {
		t.Fatalf("database %s exists = %v, %v; want true", name, exists, err)
	}
	drop()
	exists, err = harness.PostgresDatabaseExists(ctx, name)
	if err != nil || exists {
		t.Fatalf("after drop, database %s exists = %v, %v; want false", name, exists, err)
	}
}

func TestWriteBridgeConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	err := harness.WriteBridgeConfig(path, harness.BridgeConfigParams{
		HomeserverURL:       "http://127.0.0.1:8008",
		HomeserverDomain:    "hs.test",
		Port:                29999,
		DatabaseURI:         "/tmp/x.db",
		DoublePuppetASToken: "tok",
		Connectors:          map[string]any{"loopback": map[string]any{"network_url": "http://127.0.0.1:1234"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"listen: 127.0.0.1:29999",
		"address: http://127.0.0.1:29999",
		"hs.test: as_token:tok",
		"hs.test: admin",
		"network_url: http://127.0.0.1:1234",
		"command_prefix: '!pass'",
		"type: sqlite",
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("config lacks %q:\n%s", want, data)
		}
	}
}
