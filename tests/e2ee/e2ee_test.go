// Package e2ee tests the bridge in end-to-end encrypted rooms against an independent
// client implementation: matrix-js-sdk with its Rust crypto (tests/harness
// E2EEClient), through a real Dendrite, on SQLite and PostgreSQL.
package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/loopback/loopnet"
	"github.com/passerelle/passerelle/tests/harness"
)

// shared is set once by TestMain, read-only afterwards; ngircd is the suite's IRC server.
var (
	shared *harness.Suite
	ngircd *harness.IRCServer
)

func TestMain(m *testing.M) {
	params := harness.BridgeConfigParams{Connectors: connectorsAt("127.0.0.1:1", "http://127.0.0.1:1")}
	harness.RunSuite(m, "e2ee", []string{"passerelle_loopback"}, params, func(ctx context.Context, s *harness.Suite) (func(), error) {
		shared = s
		var err error
		if ngircd, err = harness.StartIRCServer(ctx, "ngircd", filepath.Join(s.Dir, "ngircd")); err != nil {
			return nil, err
		}
		return ngircd.Stop, nil
	})
}

// connectors is the connectors section of the suite's bridges: the loopback network
// at netURL (a closed port when the test needs no network) and the IRC network
// "cryptnet" on the suite's ngircd. Every bridge has both, as the registration does.
func connectors(netURL string) map[string]any { return connectorsAt(ngircd.Addr, netURL) }

func connectorsAt(ircAddr, netURL string) map[string]any {
	c := map[string]any{"loopback": map[string]any{"network_url": netURL}}
	c["irc"] = map[string]any{"connects_per_second": 50, "networks": []map[string]any{
		{"name": "cryptnet", "address": ircAddr, "bot_nick": "cryptbot", "messages_per_second": 50, "burst": 50,
			"redaction_notice": "{{.Nick}} deleted a message"}}}
	return c
}

func bot() id.UserID { return id.NewUserID("passerelle", harness.DefaultDomain) }

// startBridge runs the bridge on a database of its own with the given connectors.
func startBridge(t testing.TB, ctx context.Context, dbType string, connectors map[string]any, bridgeExtra ...map[string]any) *bridgeRun {
	t.Helper()
	var extra map[string]any
	if len(bridgeExtra) > 0 {
		extra = bridgeExtra[0]
	}
	return startBridgeWith(t, ctx, dbType, connectors, bridgeOpts{extra: extra})
}

// bridgeOpts are a test bridge's less common settings.
type bridgeOpts struct {
	// hsURL is how the bridge reaches the homeserver (directly when empty).
	hsURL string
	// extra sets keys of the config's bridge: section.
	extra map[string]any
	// logLevel is the bridge's (the harness's debug when empty); benchmarks use info,
	// as production does, so formatting debug lines is not measured.
	logLevel string
	// metricsListen opens the diagnostics listener with the profiler there.
	metricsListen string
}

// startBridgeWith is startBridge with bridgeOpts.
func startBridgeWith(t testing.TB, ctx context.Context, dbType string, connectors map[string]any, opts bridgeOpts) *bridgeRun {
	t.Helper()
	// Under the suite's directory, which a failed run keeps for a look.
	dir := filepath.Join(shared.Dir, fmt.Sprintf("bridge-%s-%d", dbType, time.Now().UnixNano()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	params := harness.BridgeConfigParams{Port: shared.Port, DatabaseType: dbType, Connectors: connectors,
		// IRC gets links to files; the bridge serves them on its listener.
		PublicAddress: fmt.Sprintf("http://127.0.0.1:%d", shared.Port), HomeserverURL: opts.hsURL, BridgeExtra: opts.extra,
		LogLevel: opts.logLevel, MetricsListen: opts.metricsListen}
	if dbType == "sqlite" {
		params.DatabaseURI = filepath.Join(dir, "passerelle.db")
	} else {
		uri, drop, err := harness.NewPostgresDB(ctx)
		if err != nil {
			t.Fatalf("PostgreSQL needed: %v", err)
		}
		t.Cleanup(drop)
		params.DatabaseURI = uri
	}
	cfgPath, logPath := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "bridge.log")
	if err := shared.WriteConfig(cfgPath, params); err != nil {
		t.Fatal(err)
	}
	run := &bridgeRun{dbType: dbType, dbURI: params.DatabaseURI}
	run.start = func() {
		var err error
		if run.b, err = harness.StartBridge(ctx, shared.Bin, cfgPath, shared.RegPath, logPath); err != nil {
			t.Fatalf("starting bridge: %v", err)
		}
	}
	run.start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bridge log tail:\n%s", run.b.LogTail(80))
		}
		run.b.Stop()
	})
	return run
}

// bridgeRun is the bridge process of a test.
type bridgeRun struct {
	b     *harness.Bridge
	start func()
	// dbType and dbURI are the bridge's database, for a test that looks inside.
	dbType, dbURI string
}

// restart stops the bridge (SIGTERM, or SIGKILL) and starts it again.
func (r *bridgeRun) restart(kill bool) {
	if kill {
		r.b.Kill()
	} else {
		r.b.Stop()
	}
	r.start()
}

// TestEncryptedManagementRoom: a user opens an encrypted DM with the bot from a real
// E2EE client; the bot greets, answers help and logins, all encrypted, also after a
// restart and a crash; the homeserver holds no clear text from the bot in the room.
func TestEncryptedManagementRoom(t *testing.T) {
	for _, dbType := range []string{"sqlite", "postgres"} {
		t.Run(dbType, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			run := startBridge(t, ctx, dbType, connectors("http://127.0.0.1:1"))
			// A name of its own per run: the homeserver outlives the test.
			user, err := shared.HS.RegisterUser(ctx, fmt.Sprintf("eve_%s_%d", dbType, time.Now().UnixNano()%1e9), false)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(user.Close)
			eve, err := harness.StartE2EEClient(ctx, shared.HS, user)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(eve.Close)
			room, err := eve.CreateEncryptedRoom(ctx, []id.UserID{bot()}, true)
			if err != nil {
				t.Fatal(err)
			}
			fromBot := func(part string) func(harness.E2EEMessage) bool {
				return func(m harness.E2EEMessage) bool { return m.Sender == bot() && strings.Contains(m.Body, part) }
			}
			seen := map[id.EventID]bool{}
			expect := func(part string) {
				t.Helper()
				// Only a new answer counts: the wait also sees what came before.
				m, err := eve.WaitMessage(ctx, room, func(m harness.E2EEMessage) bool { return !seen[m.EventID] && fromBot(part)(m) })
				if err != nil {
					t.Fatal(err)
				}
				if !m.Encrypted {
					t.Fatalf("the bot answered %q in clear text in an encrypted room", m.Body)
				}
				for _, old := range eve.Messages(room) {
					seen[old.EventID] = true
				}
			}
			expect("management room")
			ask := func(command, answer string) {
				t.Helper()
				if _, err := eve.SendText(ctx, room, command); err != nil {
					t.Fatal(err)
				}
				expect(answer)
			}
			ask("help", "login")
			ask("logins", "You have no logins")

			// The bot's keys and sessions live in the database: after a clean restart
			// and after a crash, it still reads and writes the room.
			run.restart(false)
			ask("logins", "You have no logins")
			run.restart(true)
			ask("version", "Passerelle")

			// The greeting and four answers, all encrypted.
			assertServerHoldsCiphertext(t, ctx, user, room, 5)
		})
	}
}

// assertServerHoldsCiphertext reads a room's events as the homeserver stores them: every
// message-type event of the bridge's users (bot, ghosts) is m.room.encrypted, and at
// least want of them are there.
func assertServerHoldsCiphertext(t testing.TB, ctx context.Context, user *harness.User, room id.RoomID, want int) {
	t.Helper()
	resp, err := user.Client.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 500)
	if err != nil {
		t.Fatal(err)
	}
	encrypted := 0
	for _, e := range resp.Chunk {
		ours := e.Sender == bot() || strings.HasPrefix(e.Sender.Localpart(), "irc_") || strings.HasPrefix(e.Sender.Localpart(), "loopback_")
		if !ours || e.StateKey != nil || e.Type == event.EventRedaction {
			continue
		}
		if e.Type != event.EventEncrypted {
			t.Fatalf("%s sent a clear %s into the encrypted room: %v", e.Sender, e.Type.Type, e.Content.Raw)
		}
		encrypted++
	}
	if encrypted < want {
		t.Fatalf("%d encrypted events from the bridge on the server; want at least %d", encrypted, want)
	}
}

// TestEncryptedLoginSecret: a login from an encrypted management room whose last answer
// is a secret (the SASL password): the bot reads it, deletes the message and says the
// login was saved, all encrypted.
func TestEncryptedLoginSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	startBridge(t, ctx, "sqlite", connectors("http://127.0.0.1:1"))
	user, uma := newE2EEUser(t, ctx, "uma")
	mgmt, err := uma.CreateEncryptedRoom(ctx, []id.UserID{bot()}, true)
	if err != nil {
		t.Fatal(err)
	}
	waitBotIn(t, ctx, uma, mgmt, "management room")
	var secret id.EventID
	for _, step := range []struct{ send, expect string }{
		{"login irc cryptnet", "Which nick"},
		{"uma_sec", "SASL account"},
		{"umaacct", "SASL password"},
		{"correct horse battery staple", "Saved: you are uma_sec"},
	} {
		evtID, err := uma.SendText(ctx, mgmt, step.send)
		if err != nil {
			t.Fatal(err)
		}
		secret = evtID
		waitBotIn(t, ctx, uma, mgmt, step.expect)
	}
	// The password's event is redacted on the server: its content is gone.
	evt, err := user.Client.GetEvent(ctx, mgmt, secret)
	if err != nil {
		t.Fatal(err)
	}
	if len(evt.Content.Raw) != 0 || evt.Unsigned.RedactedBecause == nil {
		t.Fatalf("the password's event was not deleted: %+v", evt.Content.Raw)
	}
}

// newE2EEUser registers a user and starts their independent E2EE client.
func newE2EEUser(t testing.TB, ctx context.Context, name string) (*harness.User, *harness.E2EEClient) {
	t.Helper()
	// A name of its own per run: the homeserver outlives the test.
	user, err := shared.HS.RegisterUser(ctx, fmt.Sprintf("%s_%d", name, time.Now().UnixNano()%1e9), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(user.Close)
	c, err := harness.StartE2EEClient(ctx, shared.HS, user)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return user, c
}

// newLoopnet starts a loopback network for a test.
func newLoopnet(tb testing.TB) *loopnet.Server {
	tb.Helper()
	net, err := loopnet.New()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(net.Close)
	return net
}

// plumbClearRoom creates a named room of c's user without encryption, asks the bot to
// plumb it to a loopback chat and waits for the bot's clear answer containing expect.
func plumbClearRoom(t testing.TB, ctx context.Context, c *harness.E2EEClient, name, chat, expect string) id.RoomID {
	t.Helper()
	room, err := c.CreateRoom(ctx, harness.E2EERoom{Name: name, Invite: []id.UserID{bot()}, Unencrypted: true})
	if err != nil {
		t.Fatal(err)
	}
	waitBotAs(t, ctx, c, room, "plumb", false)
	if _, err = c.SendText(ctx, room, "!pass plumb loopback "+chat); err != nil {
		t.Fatal(err)
	}
	waitBotAs(t, ctx, c, room, expect, false)
	return room
}

// waitEncrypted waits until c's client knows room is encrypted (it learns of the
// m.room.encryption event by its /sync).
func waitEncrypted(t testing.TB, ctx context.Context, c *harness.E2EEClient, room id.RoomID) {
	t.Helper()
	for {
		encrypted, err := c.WaitRoom(ctx, room)
		if err != nil {
			t.Fatal(err)
		} else if encrypted {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the client never saw %s turn encrypted: %v", room, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// loopbackLogin logs c's user in to the loopback network as account, from an encrypted
// management room, and returns the room.
func loopbackLogin(t testing.TB, ctx context.Context, c *harness.E2EEClient, account string) id.RoomID {
	t.Helper()
	mgmt, err := c.CreateEncryptedRoom(ctx, []id.UserID{bot()}, true)
	if err != nil {
		t.Fatal(err)
	}
	waitBotIn(t, ctx, c, mgmt, "management room")
	for _, step := range []struct{ send, expect string }{
		{"login loopback account", "account name"},
		{account, "Logged in"},
	} {
		if _, err = c.SendText(ctx, mgmt, step.send); err != nil {
			t.Fatal(err)
		}
		waitBotIn(t, ctx, c, mgmt, step.expect)
	}
	return mgmt
}

// plumbLoopback plumbs a new encrypted room of c's user to a loopback chat.
func plumbLoopback(t testing.TB, ctx context.Context, c *harness.E2EEClient, chat string) id.RoomID {
	t.Helper()
	// Named, so the bot does not take it for a second DM (a management room).
	room, err := c.CreateRoom(ctx, harness.E2EERoom{Name: "Team " + chat, Invite: []id.UserID{bot()}})
	if err != nil {
		t.Fatal(err)
	}
	waitBotIn(t, ctx, c, room, "plumb")
	if _, err = c.SendText(ctx, room, "!pass plumb loopback "+chat); err != nil {
		t.Fatal(err)
	}
	waitBotIn(t, ctx, c, room, "now linked")
	return room
}

// waitBotIn waits for an encrypted message from the bot containing part.
func waitBotIn(t testing.TB, ctx context.Context, c *harness.E2EEClient, room id.RoomID, part string) {
	t.Helper()
	waitBotAs(t, ctx, c, room, part, true)
}

// waitBotAs waits for a message from the bot containing part, encrypted or clear as
// the room is.
func waitBotAs(t testing.TB, ctx context.Context, c *harness.E2EEClient, room id.RoomID, part string, encrypted bool) {
	t.Helper()
	m, err := c.WaitMessage(ctx, room, func(m harness.E2EEMessage) bool { return m.Sender == bot() && strings.Contains(m.Body, part) })
	if err != nil {
		t.Fatal(err)
	}
	if m.Encrypted != encrypted {
		t.Fatalf("the bot's %q came encrypted=%v in a room with encryption %v", m.Body, m.Encrypted, encrypted)
	}
}

// TestEncryptedPlumbedRoom: an encrypted room plumbed to a network chat. Messages cross
// both ways; the network sees clear text, the homeserver only ciphertext.
func TestEncryptedPlumbedRoom(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	net := newLoopnet(t)
	var err error
	startBridge(t, ctx, "sqlite", connectors(net.URL))
	user, fay := newE2EEUser(t, ctx, "fay")
	account := "fay-net"
	loopbackLogin(t, ctx, fay, account)
	room := plumbLoopback(t, ctx, fay, "#secret")

	// Matrix → network: the network gets what she wrote, in clear.
	if _, err = fay.SendText(ctx, room, "hello from an encrypted room"); err != nil {
		t.Fatal(err)
	}
	if _, err = net.WaitEvent(ctx, "#secret", func(e loopnet.Event) bool {
		return e.Kind == loopnet.KindMessage && e.Sender == account && e.Text == "hello from an encrypted room"
	}); err != nil {
		t.Fatal(err)
	}
	// Network → Matrix: the ghost's message arrives encrypted, and she reads it.
	net.Inject(loopnet.Event{Chat: "#secret", Sender: "gus", Text: "hello back, encrypted"})
	ghost := id.NewUserID("loopback_gus", harness.DefaultDomain)
	m, err := fay.WaitMessage(ctx, room, func(m harness.E2EEMessage) bool { return m.Sender == ghost && m.Body == "hello back, encrypted" })
	if err != nil {
		t.Fatal(err)
	}
	if !m.Encrypted {
		t.Fatal("the ghost's message reached the encrypted room in clear text")
	}
	// A file from the network arrives as an encrypted attachment: the media store holds
	// only ciphertext, which the key in the (encrypted) event opens.
	picture := []byte("\x89PNG not really a picture, but private")
	net.Inject(loopnet.Event{Chat: "#secret", Sender: "gus", Text: "photo.png", MsgType: "m.image", FileName: "photo.png", FileData: picture, MimeType: "image/png"})
	fileMsg, err := fay.WaitMessage(ctx, room, func(m harness.E2EEMessage) bool { return m.Sender == ghost && m.MsgType == "m.image" })
	if err != nil {
		t.Fatal(err)
	}
	var fileContent event.MessageEventContent
	if err = json.Unmarshal(fileMsg.Content, &fileContent); err != nil {
		t.Fatal(err)
	}
	if !fileMsg.Encrypted || fileContent.URL != "" || fileContent.File == nil {
		t.Fatalf("the file reached the encrypted room without encryption: %s", fileMsg.Content)
	}
	stored, err := user.Client.DownloadBytes(ctx, fileContent.File.URL.ParseOrIgnore())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, []byte("private")) {
		t.Fatal("the media store holds the file in clear")
	}
	if err = fileContent.File.DecryptInPlace(stored); err != nil || !bytes.Equal(stored, picture) {
		t.Fatalf("the attachment does not open with its key (%v)", err)
	}

	// Matrix → network, a file: her client uploads it as an encrypted attachment and
	// sends the (encrypted) event; the network gets the file itself.
	letter := []byte("a private letter for the network")
	attach := attachment.NewEncryptedFile()
	up, err := user.Client.UploadBytes(ctx, attach.Encrypt(letter), "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err = fay.SendMessage(ctx, room, map[string]any{"msgtype": "m.file", "body": "letter.txt",
		"info": map[string]any{"mimetype": "text/plain", "size": len(letter)},
		"file": &event.EncryptedFileInfo{EncryptedFile: *attach, URL: up.ContentURI.CUString()}}); err != nil {
		t.Fatal(err)
	}
	if _, err = net.WaitEvent(ctx, "#secret", func(e loopnet.Event) bool {
		return e.Sender == account && e.FileName == "letter.txt" && bytes.Equal(e.FileData, letter)
	}); err != nil {
		t.Fatal(err)
	}

	// The homeserver holds only ciphertext from the bridge's users in the room: the
	// bot's two notices, the ghost's text and file.
	assertServerHoldsCiphertext(t, ctx, user, room, 4)
}

// TestEncryptionNotAllowed: with bridge.encryption.allow off, the bot says once, in
// clear, that it cannot read the encrypted room, and sends nothing else there.
func TestEncryptionNotAllowed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	net := newLoopnet(t)
	run := startBridge(t, ctx, "sqlite", connectors(net.URL), map[string]any{"encryption": map[string]any{"allow": false}})
	user, gil := newE2EEUser(t, ctx, "gil")
	room, err := gil.CreateEncryptedRoom(ctx, []id.UserID{bot()}, true)
	if err != nil {
		t.Fatal(err)
	}
	notice, err := gil.WaitMessage(ctx, room, func(m harness.E2EEMessage) bool {
		return m.Sender == bot() && strings.Contains(m.Body, "not set up to read encrypted rooms")
	})
	if err != nil {
		t.Fatal(err)
	}
	if notice.Encrypted {
		t.Fatal("the bot without encryption sent an encrypted message")
	}
	resp, err := user.Client.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	clear := 0
	for _, e := range resp.Chunk {
		if e.Sender == bot() && e.StateKey == nil {
			clear++
		}
	}
	if clear != 1 {
		t.Fatalf("the bot sent %d messages into the encrypted room; want only its one notice", clear)
	}

	// A clear room plumbed to a chat turns encryption on: one notice, and the chat's
	// messages stop, never posted in clear.
	team := plumbClearRoom(t, ctx, gil, "Gil's team", "#gilteam", "now linked")
	ghost := id.NewUserID("loopback_hugo", harness.DefaultDomain)
	net.Inject(loopnet.Event{Chat: "#gilteam", Sender: "hugo", Text: "before encryption"})
	if _, err = gil.WaitMessage(ctx, team, harness.E2EEText(ghost, "before encryption")); err != nil {
		t.Fatal(err)
	}
	if _, err = user.Client.SendStateEvent(ctx, team, event.StateEncryption, "", &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}); err != nil {
		t.Fatal(err)
	}
	waitBotAs(t, ctx, gil, team, "not set up to read encrypted rooms", false)
	net.Inject(loopnet.Event{Chat: "#gilteam", Sender: "hugo", Text: "after encryption, private"})
	// Given up in the chat's own lane (nothing of the chat was given up before).
	if _, err = run.b.WaitLog(ctx, "Giving up on event", "queue_key=remote:loopback|#gilteam"); err != nil {
		t.Fatal(err)
	}
	resp, err = user.Client.Messages(ctx, team, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range resp.Chunk {
		if e.Sender == ghost && strings.Contains(fmt.Sprint(e.Content.Raw), "after encryption") {
			t.Fatal("the chat's message was posted in clear into the room after it turned encrypted")
		}
	}
}

// TestEncryptedPortal: with the product's default, a portal the bridge creates is
// encrypted from its first event; network messages in it arrive encrypted.
func TestEncryptedPortal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	net := newLoopnet(t)
	startBridge(t, ctx, "sqlite", connectors(net.URL), map[string]any{"encryption": map[string]any{"default": true}})
	user, hal := newE2EEUser(t, ctx, "hal")
	chat := fmt.Sprintf("#crypt%d", time.Now().UnixNano()%1e6)
	room, err := hal.Join(ctx, "#loopback_"+strings.TrimPrefix(chat, "#")+":"+harness.DefaultDomain)
	if err != nil {
		t.Fatal(err)
	}
	if encrypted, err := hal.WaitRoom(ctx, room); err != nil || !encrypted {
		t.Fatalf("the new portal is not encrypted (%v)", err)
	}
	net.Inject(loopnet.Event{Chat: chat, Sender: "ida", Text: "hello in an encrypted portal"})
	ghost := id.NewUserID("loopback_ida", harness.DefaultDomain)
	m, err := hal.WaitMessage(ctx, room, func(m harness.E2EEMessage) bool { return m.Sender == ghost && m.Body == "hello in an encrypted portal" })
	if err != nil {
		t.Fatal(err)
	}
	if !m.Encrypted {
		t.Fatal("the network's message reached the encrypted portal in clear text")
	}
	var enc event.EncryptionEventContent
	if err = user.Client.StateEvent(ctx, room, event.StateEncryption, "", &enc); err != nil || enc.Algorithm != id.AlgorithmMegolmV1 {
		t.Fatalf("the portal's encryption state: %+v, %v", enc, err)
	}
}

// TestEncryptionRequired: with bridge.encryption.require, a room without encryption is
// not plumbed (the bot says why) until encryption is turned on, and portals are
// created encrypted even where default is off.
func TestEncryptionRequired(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	net := newLoopnet(t)
	var err error
	startBridge(t, ctx, "sqlite", connectors(net.URL), map[string]any{"encryption": map[string]any{"require": true, "default": false}})
	user, nia := newE2EEUser(t, ctx, "nia")
	loopbackLogin(t, ctx, nia, "nia-net")

	room := plumbClearRoom(t, ctx, nia, "Nia's clear room", "#required", "only bridges encrypted rooms")

	// Encryption turned on: the same room plumbs, and the network's messages arrive
	// encrypted.
	if _, err = user.Client.SendStateEvent(ctx, room, event.StateEncryption, "", &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}); err != nil {
		t.Fatal(err)
	}
	waitEncrypted(t, ctx, nia, room)
	if _, err = nia.SendText(ctx, room, "!pass plumb loopback #required"); err != nil {
		t.Fatal(err)
	}
	waitBotIn(t, ctx, nia, room, "now linked")
	net.Inject(loopnet.Event{Chat: "#required", Sender: "ola", Text: "required and encrypted"})
	m, err := nia.WaitMessage(ctx, room, harness.E2EEText(id.NewUserID("loopback_ola", harness.DefaultDomain), "required and encrypted"))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Encrypted {
		t.Fatal("clear text in the encrypted room")
	}

	portal, err := nia.Join(ctx, "#loopback_required2:"+harness.DefaultDomain)
	if err != nil {
		t.Fatal(err)
	}
	if encrypted, err := nia.WaitRoom(ctx, portal); err != nil || !encrypted {
		t.Fatalf("a portal under require is not encrypted (%v)", err)
	}
}
