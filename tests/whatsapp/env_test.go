// Package whatsapp drives the real bridge binary with the WhatsApp connector through a
// real Dendrite homeserver, on SQLite and on PostgreSQL. WhatsApp's servers cannot be
// reached from tests, so the connector's whatsmeow client talks to fakewa, which the
// test drives with whatsmeow's own event and protobuf types; whatsmeow's real session
// store runs on the bridge's database.
package whatsapp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/types"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/whatsapp/fakewa"
	"github.com/passerelle/passerelle/tests/harness"
)

// stack is shared by every variant: one homeserver knowing the bridge's registration.
type stack struct {
	hs      *harness.Homeserver
	bin     string
	dir     string
	port    int
	reg     *appservice.Registration
	regPath string
	stack   *harness.Stack
}

var shared *stack // set once by TestMain, read-only afterwards

func TestMain(m *testing.M) {
	params := harness.BridgeConfigParams{
		Connectors: map[string]any{"whatsapp": map[string]any{"fake_network": "127.0.0.1:1"}}}
	harness.RunSuite(m, "whatsapp", []string{"passerelle_loopback"}, params, func(_ context.Context, s *harness.Suite) (func(), error) {
		shared = &stack{hs: s.HS, bin: s.Bin, dir: s.Dir, port: s.Port, reg: s.Reg, regPath: s.RegPath, stack: s.Stack}
		return nil, nil
	})
}

// variant is one bridge process on one database with its own fake network and users.
type variant struct {
	t       *testing.T
	name    string
	wa      *fakewa.Server
	cfgPath string
	bridge  *harness.Bridge
	alice   *harness.User // logs in to WhatsApp as alicePhone
	mallory *harness.User // another Matrix user
	mgmt    id.RoomID
	// seenEvents are events a step already consumed; usedConns login connections.
	seenEvents map[id.EventID]bool
	usedConns  map[*fakewa.Conn]bool
	// pictures serves profile and group pictures, as WhatsApp's CDN does.
	pictures *httptest.Server
	// alicePhone is the account's number; bob, carol and dan are contacts.
	alicePhone, bobPhone, carolPhone, danPhone string
	// pgProxy (PostgreSQL variants) sits between the bridge and its database, so a
	// test can take the database away.
	pgProxy *harness.TCPProxy
	// hsProxy (variantOptions.hsProxy) sits between the bridge and the homeserver.
	hsProxy *harness.HTTPProxy
}

// newVariant starts a bridge for one test on one database; tag keeps the test's Matrix
// users apart from other tests' on the shared homeserver.
func newVariant(t *testing.T, tag, dbType string, historyCount int) *variant {
	t.Helper()
	return newVariantWith(t, tag, dbType, historyCount, variantOptions{})
}

// variantOptions are what a test changes of a variant's bridge.
type variantOptions struct {
	// bridgeExtra sets or overrides keys of the config's bridge: section (encryption,
	// say).
	bridgeExtra map[string]any
	// hsProxy puts an HTTP proxy (variant.hsProxy) between the bridge and the
	// homeserver, so the test can make the homeserver slow.
	hsProxy bool
}

// newVariantWith is newVariant with options.
func newVariantWith(t *testing.T, tag, dbType string, historyCount int, opts variantOptions) *variant {
	t.Helper()
	ctx := context.Background()
	prefix := map[string]string{"sqlite": "331", "postgres": "332"}[dbType]
	v := &variant{t: t, name: dbType, alicePhone: prefix + "0000001", bobPhone: prefix + "0000002",
		carolPhone: prefix + "0000003", danPhone: prefix + "0000004"}
	var err error
	if v.wa, err = fakewa.NewServer(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.wa.Close)
	v.pictures = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(pictureBytes(r.URL.Path))
	}))
	t.Cleanup(v.pictures.Close)
	dbURI := filepath.Join(t.TempDir(), "passerelle.db")
	if dbType == "postgres" {
		uri, drop, err := harness.NewPostgresDB(ctx)
		if err != nil {
			t.Fatalf("creating PostgreSQL database: %v", err)
		}
		t.Cleanup(drop)
		if dbURI, v.pgProxy, err = proxied(uri); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.pgProxy.Close)
	}
	var hsURL string
	if opts.hsProxy {
		if v.hsProxy, err = harness.NewHTTPProxy(shared.hs.URL); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.hsProxy.Close)
		hsURL = v.hsProxy.URL
	}
	v.cfgPath = filepath.Join(t.TempDir(), "config.yaml")
	if err = shared.stack.WriteConfig(v.cfgPath, harness.BridgeConfigParams{
		Port: shared.port, DatabaseType: dbType, DatabaseURI: dbURI, BridgeExtra: opts.bridgeExtra, HomeserverURL: hsURL,
		Permissions: map[string]string{shared.hs.Domain: "user", shared.hs.UserID(tag + "_mallory_" + dbType).String(): "admin"},
		Connectors: map[string]any{"whatsapp": map[string]any{"fake_network": v.wa.Addr(),
			"history_count": historyCount, "contact_names": true, "max_media_bytes": testMaxMediaBytes}},
	}); err != nil {
		t.Fatal(err)
	}
	v.start()
	if v.alice, err = shared.hs.RegisterUser(ctx, tag+"_alice_"+dbType, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.alice.Close)
	if v.mallory, err = shared.hs.RegisterUser(ctx, tag+"_mallory_"+dbType, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.mallory.Close)
	return v
}

// proxied puts a TCP proxy in front of the PostgreSQL server of uri.
func proxied(uri string) (string, *harness.TCPProxy, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", nil, err
	}
	p, err := harness.NewTCPProxy(u.Host)
	if err != nil {
		return "", nil, err
	}
	u.Host = p.Addr
	return u.String(), p, nil
}

// testMaxMediaBytes is the suites' WhatsApp file limit: small, so a file past it is
// cheap to send.
const testMaxMediaBytes = 1 << 20

// waitSpoolEmpty waits until the bridge's media spool holds no file: every received
// file is removed once its event is finished.
func (v *variant) waitSpoolEmpty() {
	v.t.Helper()
	dir := filepath.Join(filepath.Dir(v.cfgPath), "media-spool")
	var left []string
	for range 200 {
		entries, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			v.t.Fatalf("reading the media spool: %v", err)
		}
		left = left[:0]
		for _, e := range entries {
			left = append(left, e.Name())
		}
		if len(left) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	v.t.Errorf("the media spool still holds %v after every file was bridged", left)
}

func (v *variant) start() {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b, err := harness.StartBridge(ctx, shared.bin, v.cfgPath, shared.regPath, filepath.Join(shared.dir, "bridge-"+v.name+".log"))
	if err != nil {
		v.t.Fatalf("starting bridge: %v", err)
	}
	v.bridge = b
	v.t.Cleanup(func() {
		if v.t.Failed() {
			v.t.Logf("bridge log tail:\n%s", b.LogTail(80))
		}
		b.Stop()
	})
}

func (v *variant) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	v.t.Cleanup(cancel)
	return ctx
}

// managementRoom opens a DM with the bridge bot for user.
func (v *variant) managementRoom(u *harness.User) id.RoomID {
	v.t.Helper()
	ctx := v.ctx()
	resp, err := u.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{bot()}})
	if err != nil {
		v.t.Fatal(err)
	}
	if _, err = u.WaitEvent(ctx, resp.RoomID, noticeFrom(bot(), "management room")); err != nil {
		v.t.Fatal(err)
	}
	return resp.RoomID
}

// command sends a command in the management room and waits for the bot's notice
// containing every part.
func (v *variant) command(u *harness.User, room id.RoomID, cmd string, parts ...string) *event.Event {
	v.t.Helper()
	ctx := v.ctx()
	if _, err := u.SendText(ctx, room, cmd); err != nil {
		v.t.Fatal(err)
	}
	evt, err := u.WaitEvent(ctx, room, noticeFrom(bot(), parts...))
	if err != nil {
		v.t.Fatalf("after %q: %v", cmd, err)
	}
	return evt
}

func bot() id.UserID { return id.NewUserID("passerelle", harness.DefaultDomain) }

// ghost is the Matrix ID of a WhatsApp contact's ghost.
func ghost(phone string) id.UserID {
	return id.NewUserID("whatsapp_"+phone, harness.DefaultDomain)
}

func userJID(phone string) types.JID { return types.NewJID(phone, types.DefaultUserServer) }

// noticeFrom matches a notice from sender containing every part.
func noticeFrom(sender id.UserID, parts ...string) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.Type != event.EventMessage || evt.Sender != sender {
			return false
		}
		msg := evt.Content.AsMessage()
		if msg == nil || msg.MsgType != event.MsgNotice {
			return false
		}
		for _, p := range parts {
			if !strings.Contains(msg.Body, p) {
				return false
			}
		}
		return true
	}
}

// pictureBytes is the picture served at path: distinct bytes per path.
func pictureBytes(path string) []byte { return []byte("\x89PNG\r\n\x1a\npicture " + path) }
