package e2ee

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/loopback/loopnet"
	"github.com/passerelle/passerelle/tests/harness"
)

// TestKeyRequest: a member's device that lost a room key the bridge shared with it
// asks the bridge's device for it and gets it forwarded; a member who joined after the
// key was shared asks too and is refused (m.room_key.withheld, m.unauthorised), so a
// late joiner cannot read what was said before. The asking devices are a legacy
// client's behaviour (Rust crypto asks only its own user's devices), played here by
// mautrix's Olm machine on the test side.
func TestKeyRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	net := newLoopnet(t)
	run := startBridgeWith(t, ctx, "sqlite", connectors(net.URL), bridgeOpts{extra: map[string]any{"encryption": map[string]any{"default": true}}})
	chat := fmt.Sprintf("#keyreq%d", time.Now().UnixNano()%1e6)
	alias := "#loopback_" + strings.TrimPrefix(chat, "#") + ":" + harness.DefaultDomain
	ghost := id.NewUserID("loopback_ray", harness.DefaultDomain)

	kay := newCryptoMember(t, ctx, "kay")
	joined, err := kay.client.JoinRoom(ctx, alias, nil)
	if err != nil {
		t.Fatalf("joining the portal: %v", err)
	}
	room := joined.RoomID
	net.Inject(loopnet.Event{Chat: chat, Sender: "ray", Text: "for members only"})
	evt := kay.waitEncrypted(t, ctx, room, ghost)
	content := evt.Content.AsEncrypted()
	// The room key the bridge sent her device is lost before it is read.
	kay.syncUntil(t, ctx, func(resp *mautrix.RespSync) bool {
		for _, td := range resp.ToDevice.Events {
			if td.Sender == bot() && td.Type.Type == event.ToDeviceEncrypted.Type {
				return true
			}
		}
		return false
	}, false)
	if _, err = kay.mach.DecryptMegolmEvent(ctx, evt); err == nil {
		t.Fatal("the device read the message without its room key")
	}

	botDevice := run.botDevice(t, ctx)
	filled, err := kay.mach.RequestRoomKey(ctx, bot(), botDevice, room, content.SenderKey, content.SessionID)
	if err != nil {
		t.Fatalf("asking the bridge for the room key: %v", err)
	}
	kay.syncUntil(t, ctx, func(*mautrix.RespSync) bool {
		select {
		case ok := <-filled:
			if !ok {
				t.Fatal("the key request was not answered")
			}
			return true
		default:
			return false
		}
	}, true)
	decrypted, err := kay.mach.DecryptMegolmEvent(ctx, evt)
	if err != nil {
		t.Fatalf("decrypting with the forwarded key: %v", err)
	}
	if body := decrypted.Content.AsMessage().Body; body != "for members only" {
		t.Fatalf("decrypted body %q", body)
	}

	// Someone who joins afterwards was never given that key and may not have it.
	lee := newCryptoMember(t, ctx, "lee")
	if _, err = lee.client.JoinRoom(ctx, alias, nil); err != nil {
		t.Fatalf("joining the portal: %v", err)
	}
	if _, err = lee.mach.RequestRoomKey(ctx, bot(), botDevice, room, content.SenderKey, content.SessionID); err != nil {
		t.Fatalf("asking the bridge for the room key: %v", err)
	}
	withheld := lee.syncUntil(t, ctx, func(resp *mautrix.RespSync) bool {
		for _, td := range resp.ToDevice.Events {
			if td.Sender == bot() && td.Type.Type == event.ToDeviceRoomKeyWithheld.Type {
				return true
			}
		}
		return false
	}, true)
	for _, td := range withheld.ToDevice.Events {
		if td.Type.Type != event.ToDeviceRoomKeyWithheld.Type {
			continue
		}
		if td.Content.Parsed == nil {
			if err = td.Content.ParseRaw(event.ToDeviceRoomKeyWithheld); err != nil {
				t.Fatal(err)
			}
		}
		w := td.Content.AsRoomKeyWithheld()
		if w.SessionID != content.SessionID || w.Code != event.RoomKeyWithheldUnauthorized {
			t.Fatalf("withheld notice for session %s with code %s; want %s, %s", w.SessionID, w.Code, content.SessionID, event.RoomKeyWithheldUnauthorized)
		}
	}
	if _, err = lee.mach.DecryptMegolmEvent(ctx, evt); err == nil {
		t.Fatal("a member who joined later read a message sent before")
	}
}

// cryptoMember is a room member whose one device runs mautrix's Olm machine with its
// state in memory, syncing by hand so a test can drop or keep what arrives.
type cryptoMember struct {
	client *mautrix.Client
	mach   *crypto.OlmMachine
	since  string
}

func newCryptoMember(t *testing.T, ctx context.Context, name string) *cryptoMember {
	t.Helper()
	user, err := shared.HS.RegisterUser(ctx, fmt.Sprintf("%s_%d", name, time.Now().UnixNano()%1e9), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(user.Close)
	token, device, err := harness.LoginNewDevice(ctx, shared.HS, user.UserID, harness.TestPassword, name+"'s legacy client")
	if err != nil {
		t.Fatal(err)
	}
	client, err := shared.HS.NewClient(user.UserID, token)
	if err != nil {
		t.Fatal(err)
	}
	client.DeviceID = device
	log := zerolog.Nop()
	m := &cryptoMember{client: client, mach: crypto.NewOlmMachine(client, &log, crypto.NewMemoryStore(nil), memoryStateStore{})}
	if err = m.mach.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err = m.mach.ShareKeys(ctx, 0); err != nil {
		t.Fatalf("uploading the device's keys: %v", err)
	}
	// From here on, only what arrives later.
	resp, err := client.SyncRequest(ctx, 0, "", "", false, event.PresenceOffline)
	if err != nil {
		t.Fatal(err)
	}
	m.since = resp.NextBatch
	return m
}

// syncUntil syncs until done says so, handing each response to the Olm machine when
// process is set (otherwise its to-device events are dropped), and returns the last.
func (m *cryptoMember) syncUntil(t *testing.T, ctx context.Context, done func(*mautrix.RespSync) bool, process bool) *mautrix.RespSync {
	t.Helper()
	for {
		resp, err := m.client.SyncRequest(ctx, 1000, m.since, "", false, event.PresenceOffline)
		if err != nil {
			t.Fatalf("syncing: %v", err)
		}
		if process {
			m.mach.ProcessSyncResponse(ctx, resp, m.since)
		}
		m.since = resp.NextBatch
		if done(resp) {
			return resp
		}
	}
}

// waitEncrypted returns the first encrypted event sender sent into room.
func (m *cryptoMember) waitEncrypted(t *testing.T, ctx context.Context, room id.RoomID, sender id.UserID) *event.Event {
	t.Helper()
	for ctx.Err() == nil {
		msgs, err := m.client.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 50)
		if err != nil {
			t.Fatal(err)
		}
		for _, evt := range msgs.Chunk {
			if evt.Sender == sender && evt.Type == event.EventEncrypted {
				evt.RoomID = room
				if err = evt.Content.ParseRaw(evt.Type); err != nil {
					t.Fatal(err)
				}
				return evt
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no encrypted message from %s in %s", sender, room)
	return nil
}

// botDevice is the bridge bot's device, as the bridge's own database records it: the
// server lists one device per bridge the suite has started, all of the same bot.
func (run *bridgeRun) botDevice(t *testing.T, ctx context.Context) id.DeviceID {
	t.Helper()
	if run.dbType != "sqlite" {
		t.Fatalf("reading the bot's device from a %s database is not done here", run.dbType)
	}
	db, err := sql.Open("sqlite3", run.dbURI)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var device id.DeviceID
	if err = db.QueryRowContext(ctx, `SELECT device_id FROM crypto_account`).Scan(&device); err != nil {
		t.Fatalf("reading the bot's device: %v", err)
	}
	return device
}

// TestBotKeysLostOnServer: the homeserver loses the bot device's keys (an admin reset
// them, or the device was deleted and the bridge's login made it again). At the next
// start the bridge warns and uploads the same keys again, so someone who never talked
// to the bridge before can still open an encrypted DM with it and be answered.
func TestBotKeysLostOnServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	run := startBridge(t, ctx, "sqlite", connectors("http://127.0.0.1:1"))
	if _, err := run.b.WaitLog(ctx, "End-to-end encryption ready"); err != nil {
		t.Fatal(err)
	}
	device := run.botDevice(t, ctx)
	run.b.Stop()

	keys, err := sql.Open("sqlite3", filepath.Join(shared.HS.Dir, "keyserver.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	for _, table := range []string{"keyserver_device_keys", "keyserver_one_time_keys"} {
		if _, err = keys.ExecContext(ctx, `DELETE FROM `+table+` WHERE user_id=$1 AND device_id=$2`, bot().String(), device.String()); err != nil {
			t.Fatalf("deleting the bot's keys from %s: %v", table, err)
		}
	}

	run.start()
	if _, err = run.b.WaitLog(ctx, "lost the bot's device keys", device.String()); err != nil {
		t.Fatalf("no warning about the lost keys: %v", err)
	}
	user, fay := newE2EEUser(t, ctx, "fay")
	// The warning comes just before the upload: wait until the server has the keys.
	for {
		resp, err := user.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bot(): {device}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := resp.DeviceKeys[bot()][device]; ok {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the bridge did not upload its device keys again")
		case <-time.After(100 * time.Millisecond):
		}
	}
	room, err := fay.CreateEncryptedRoom(ctx, []id.UserID{bot()}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = fay.WaitMessage(ctx, room, func(m harness.E2EEMessage) bool {
		return m.Sender == bot() && strings.Contains(m.Body, "management room")
	}); err != nil {
		t.Fatal(err)
	}
	if _, err = fay.SendText(ctx, room, "help"); err != nil {
		t.Fatal(err)
	}
	answer, err := fay.WaitMessage(ctx, room, func(m harness.E2EEMessage) bool {
		return m.Sender == bot() && strings.Contains(m.Body, "login")
	})
	if err != nil {
		t.Fatalf("the bot did not answer an encrypted help: %v", err)
	}
	if !answer.Encrypted {
		t.Fatal("the bot answered in clear text")
	}
}
