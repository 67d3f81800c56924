package e2ee

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/loopback/loopnet"
	"github.com/passerelle/passerelle/tests/harness"
)

// TestEncryptedCrashMidStream: the bridge is killed while network messages stream into
// an encrypted room and its user writes while it is down. After the restart every
// message arrives once, in order, readable; what she wrote reaches the network once; a
// device she added while the bridge was down gets the next room key.
func TestEncryptedCrashMidStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	net := newLoopnet(t)
	var err error
	run := startBridge(t, ctx, "postgres", connectors(net.URL))
	user, jo := newE2EEUser(t, ctx, "jo")
	account := "jo-net"
	loopbackLogin(t, ctx, jo, account)
	room := plumbLoopback(t, ctx, jo, "#stream")
	ghost := id.NewUserID("loopback_kim", harness.DefaultDomain)

	const total = 40
	for i := 0; i < total; i++ {
		net.Inject(loopnet.Event{Chat: "#stream", Sender: "kim", Text: fmt.Sprintf("stream %02d", i)})
	}
	// Killed while the stream is on its way into the room.
	if _, err = jo.WaitMessage(ctx, room, harness.E2EEText(ghost, "stream 03")); err != nil {
		t.Fatal(err)
	}
	run.b.Kill()
	// She writes while it is down (the homeserver keeps retrying the transaction), and
	// adds a device.
	for i := 0; i < 3; i++ {
		if _, err = jo.SendText(ctx, room, fmt.Sprintf("while down %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	token, device, err := harness.LoginNewDevice(ctx, shared.HS, user.UserID, harness.TestPassword, "jo's second device")
	if err != nil {
		t.Fatal(err)
	}
	second, err := harness.StartE2EEClientWithToken(ctx, shared.HS, user.UserID, token, device)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)
	run.start()

	if _, err = jo.WaitMessage(ctx, room, harness.E2EEText(ghost, fmt.Sprintf("stream %02d", total-1))); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range jo.Messages(room) {
		if m.Sender == ghost {
			if !m.Encrypted {
				t.Fatalf("%q arrived in clear text", m.Body)
			}
			got = append(got, m.Body)
		}
	}
	if len(got) != total {
		t.Fatalf("%d messages arrived for %d sent: %q", len(got), total, got)
	}
	for i, body := range got {
		if body != fmt.Sprintf("stream %02d", i) {
			t.Fatalf("message %d is %q: out of order or duplicated (%q)", i, body, got)
		}
	}
	if _, err = net.WaitEvent(ctx, "#stream", func(e loopnet.Event) bool { return e.Text == "while down 2" }); err != nil {
		t.Fatal(err)
	}
	sent := map[string]int{}
	for _, e := range net.Events("#stream") {
		if e.Sender == account {
			sent[e.Text]++
		}
	}
	for i := 0; i < 3; i++ {
		if n := sent[fmt.Sprintf("while down %d", i)]; n != 1 {
			t.Fatalf("%q reached the network %d times", fmt.Sprintf("while down %d", i), n)
		}
	}

	// The new device reads what comes next: the bridge learnt of it from its /sync
	// and shared the next room key with it.
	net.Inject(loopnet.Event{Chat: "#stream", Sender: "kim", Text: "for every device"})
	for _, c := range []*harness.E2EEClient{jo, second} {
		m, err := c.WaitMessage(ctx, room, harness.E2EEText(ghost, "for every device"))
		if err != nil {
			t.Fatalf("device %s: %v", c.DeviceID, err)
		}
		if !m.Encrypted {
			t.Fatal("clear text in the encrypted room")
		}
	}
}

// syncGate is a reverse proxy between the bridge and the homeserver that can hold back
// the responses to the bot's /sync, and with them the room keys they carry, as a slow
// to-device delivery would.
type syncGate struct {
	srv  *httptest.Server
	mu   sync.Mutex
	open chan struct{} // closed while responses flow
}

func newSyncGate(t testing.TB, target string) *syncGate {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &syncGate{open: make(chan struct{})}
	close(g.open)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if strings.HasSuffix(resp.Request.URL.Path, "/sync") {
			g.mu.Lock()
			open := g.open
			g.mu.Unlock()
			select {
			case <-open:
			case <-resp.Request.Context().Done():
			}
		}
		return nil
	}
	g.srv = httptest.NewServer(proxy)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *syncGate) hold() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *syncGate) release() {
	g.mu.Lock()
	close(g.open)
	g.mu.Unlock()
}

// TestLateRoomKey: a command whose room key reaches the bridge late (its /sync held
// back) waits in the queue, across a crash, and is answered once the key arrives.
func TestLateRoomKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	gate := newSyncGate(t, shared.HS.URL)
	run := startBridgeWith(t, ctx, "sqlite", connectors("http://127.0.0.1:1"), bridgeOpts{hsURL: gate.srv.URL})
	_, lea := newE2EEUser(t, ctx, "lea")
	room, err := lea.CreateEncryptedRoom(ctx, []id.UserID{bot()}, true)
	if err != nil {
		t.Fatal(err)
	}
	waitBotIn(t, ctx, lea, room, "management room")

	gate.hold()
	if _, err = lea.SendText(ctx, room, "logins"); err != nil {
		t.Fatal(err)
	}
	// The bridge has the event but not its key: it asks for it and waits; killed while
	// it waits, it still has the event after the restart.
	if _, err = run.b.WaitLog(ctx, "has not arrived yet"); err != nil {
		t.Fatal(err)
	}
	run.restart(true)
	gate.release()
	waitBotIn(t, ctx, lea, room, "You have no logins")
}

// TestUnreadableMessage: a message the bridge can never read gets a notice to its
// sender: when the sender's device withholds the key (it sends keys to verified
// devices only), at once; when the key never comes, after bridge.encryption.key_wait.
func TestUnreadableMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	startBridge(t, ctx, "sqlite", connectors("http://127.0.0.1:1"), map[string]any{"encryption": map[string]any{"key_wait": "10s"}})
	user, mo := newE2EEUser(t, ctx, "mo")
	room, err := mo.CreateEncryptedRoom(ctx, []id.UserID{bot()}, true)
	if err != nil {
		t.Fatal(err)
	}
	waitBotIn(t, ctx, mo, room, "management room")

	// Never comes: an encrypted event under a session nobody ever shared (a client that
	// crashed before sending its keys).
	if _, err = user.Client.SendMessageEvent(ctx, room, event.EventEncrypted, map[string]any{
		"algorithm":  id.AlgorithmMegolmV1,
		"ciphertext": randomBase64(t, 96),
		"sender_key": randomBase64(t, 32),
		"session_id": randomBase64(t, 32),
		"device_id":  mo.DeviceID,
	}); err != nil {
		t.Fatal(err)
	}
	waitBotIn(t, ctx, mo, room, "its key never arrived")
	// And the room goes on.
	if _, err = mo.SendText(ctx, room, "logins"); err != nil {
		t.Fatal(err)
	}
	waitBotIn(t, ctx, mo, room, "You have no logins")

	// Withheld: her client now shares keys only with verified devices; in a new room
	// its first key is withheld from the bridge.
	if err = mo.BlacklistUnverified(ctx, true); err != nil {
		t.Fatal(err)
	}
	second, err := mo.CreateEncryptedRoom(ctx, []id.UserID{bot()}, true)
	if err != nil {
		t.Fatal(err)
	}
	waitBotIn(t, ctx, mo, second, "management room")
	if _, err = mo.SendText(ctx, second, "logins"); err != nil {
		t.Fatal(err)
	}
	waitBotIn(t, ctx, mo, second, "withheld the key from the bridge")
}

// randomBase64 is n random bytes in unpadded base64, as Matrix writes keys.
func randomBase64(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawStdEncoding.EncodeToString(b)
}
