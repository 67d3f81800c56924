package harness_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/tests/harness"
)

// TestE2EEClientRoundTrip proves the E2EE driver on this machine: two independent
// matrix-js-sdk devices exchange messages in an encrypted room, and the homeserver only
// ever holds m.room.encrypted for them.
func TestE2EEClientRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	hs, _ := startHomeserver(t, ctx)

	alice, err := hs.RegisterUser(ctx, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := hs.RegisterUser(ctx, "bob", false)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	// The first run installs the driver's npm dependencies; later ones start in seconds.
	sctx, scancel := context.WithTimeout(ctx, 5*time.Minute)
	defer scancel()
	aliceE2EE, err := harness.StartE2EEClient(sctx, hs, alice)
	if err != nil {
		t.Fatal(err)
	}
	defer logOnFailure(t, aliceE2EE)()
	defer aliceE2EE.Close()
	bobE2EE, err := harness.StartE2EEClient(sctx, hs, bob)
	if err != nil {
		t.Fatal(err)
	}
	defer logOnFailure(t, bobE2EE)()
	defer bobE2EE.Close()
	if aliceE2EE.DeviceID == alice.DeviceID || bobE2EE.DeviceID == bob.DeviceID {
		t.Fatalf("the e2ee clients must have devices of their own (alice %s/%s, bob %s/%s)",
			aliceE2EE.DeviceID, alice.DeviceID, bobE2EE.DeviceID, bob.DeviceID)
	}
	t.Logf("crypto: %s; alice %s, bob %s", aliceE2EE.CryptoVersion, aliceE2EE.DeviceID, bobE2EE.DeviceID)

	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 60*time.Second) }

	wctx, wcancel := step()
	defer wcancel()
	roomID, err := aliceE2EE.CreateEncryptedRoom(wctx, []id.UserID{bob.UserID}, true)
	if err != nil {
		t.Fatal(err)
	}
	invited, err := bobE2EE.WaitInvite(wctx, func(r id.RoomID, inviter id.UserID) bool {
		return r == roomID && inviter == alice.UserID
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bobE2EE.Join(wctx, invited.String()); err != nil {
		t.Fatal(err)
	}
	// Alice shares the room key with the devices she knows of: make sure her client has
	// seen bob join and knows his crypto device before she sends.
	if err := aliceE2EE.WaitMember(wctx, roomID, bob.UserID, event.MembershipJoin); err != nil {
		t.Fatal(err)
	}
	devices, err := aliceE2EE.WaitDeviceKeys(wctx, bob.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if !containsDevice(devices[bob.UserID], bobE2EE.DeviceID) {
		t.Fatalf("alice knows bob's devices %v, not his e2ee device %s", devices[bob.UserID], bobE2EE.DeviceID)
	}

	sent, encrypted, err := aliceE2EE.SendMessage(wctx, roomID, map[string]any{"msgtype": "m.text", "body": "secret hello"})
	if err != nil {
		t.Fatal(err)
	}
	if !encrypted {
		t.Fatalf("alice's client sent %s in the clear", sent)
	}
	got, err := bobE2EE.WaitMessage(wctx, roomID, harness.E2EEText(alice.UserID, "secret hello"))
	if err != nil {
		t.Fatal(err)
	}
	if got.EventID != sent || !got.Encrypted || got.MsgType != event.MsgText {
		t.Fatalf("bob received %+v, want event %s, encrypted, m.text", got, sent)
	}

	// And back.
	reply, err := bobE2EE.SendText(wctx, roomID, "secret reply")
	if err != nil {
		t.Fatal(err)
	}
	back, err := aliceE2EE.WaitMessage(wctx, roomID, harness.E2EEText(bob.UserID, "secret reply"))
	if err != nil {
		t.Fatal(err)
	}
	if back.EventID != reply || !back.Encrypted {
		t.Fatalf("alice received %+v, want event %s, encrypted", back, reply)
	}

	// What the homeserver holds: read the room back with bob's plain client.
	resp, err := bob.Messages(wctx, roomID, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		t.Fatalf("reading /messages: %v", err)
	}
	seen := map[id.EventID]bool{}
	for _, evt := range resp.Chunk {
		seen[evt.ID] = true
		if evt.ID == sent || evt.ID == reply {
			if evt.Type.Type != event.EventEncrypted.Type {
				t.Errorf("event %s is %s on the server, want %s", evt.ID, evt.Type.Type, event.EventEncrypted.Type)
			}
			var content struct {
				Algorithm  string `json:"algorithm"`
				Ciphertext string `json:"ciphertext"`
			}
			if err := json.Unmarshal(evt.Content.VeryRaw, &content); err != nil || content.Algorithm != "m.megolm.v1.aes-sha2" || content.Ciphertext == "" {
				t.Errorf("event %s content %s: want megolm ciphertext", evt.ID, evt.Content.VeryRaw)
			}
		}
		if evt.Type.Type == event.EventMessage.Type {
			t.Errorf("clear message on the server: %s", harness.DescribeEvent(evt))
		}
	}
	if !seen[sent] || !seen[reply] {
		t.Errorf("/messages lacks %s or %s", sent, reply)
	}
	raw, err := json.Marshal(resp.Chunk)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "secret hello") || strings.Contains(string(raw), "secret reply") {
		t.Errorf("a clear text reached the server: %s", raw)
	}

	// The drivers' stdout carried protocol lines only (the harness logs anything else).
	for _, c := range []*harness.E2EEClient{aliceE2EE, bobE2EE} {
		c.Close()
		data, err := os.ReadFile(c.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "unparsable driver stdout line") {
			t.Errorf("driver for %s wrote something else than protocol lines on stdout; see %s", c.UserID, c.LogPath)
		}
	}
}

func containsDevice(devices []id.DeviceID, want id.DeviceID) bool {
	for _, d := range devices {
		if d == want {
			return true
		}
	}
	return false
}

// logOnFailure returns a func that prints the driver's log tail if the test failed.
func logOnFailure(t *testing.T, c *harness.E2EEClient) func() {
	return func() {
		if t.Failed() {
			t.Logf("e2ee driver log tail for %s/%s (%s):\n%s", c.UserID, c.DeviceID, c.LogPath, c.LogTail(60))
		}
	}
}
