// Package e2e drives the real bridge binary (built with the loopback test connector)
// through a real Dendrite homeserver, on SQLite and on PostgreSQL.
package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/loopback/loopnet"
	"github.com/passerelle/passerelle/tests/harness"
)

// stack is what every variant shares: one homeserver that knows the bridge's
// registration (same tokens and port for every variant) and the bridge binary.
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
		Connectors: map[string]any{"loopback": map[string]any{"network_url": "http://127.0.0.1:1"}}}
	harness.RunSuite(m, "e2e", []string{"passerelle_loopback"}, params, func(_ context.Context, s *harness.Suite) (func(), error) {
		shared = &stack{hs: s.HS, bin: s.Bin, dir: s.Dir, port: s.Port, reg: s.Reg, regPath: s.RegPath, stack: s.Stack}
		return nil, nil
	})
}

// variant is one bridge process on one database, with its own loopnet network and
// users (so variants never see each other's rooms).
type variant struct {
	t       *testing.T
	name    string
	net     *loopnet.Server
	cfgPath string
	logPath string
	bridge  *harness.Bridge
	alice   *harness.User // admin, logs in to loopnet as account "alice-<name>"
	dave    *harness.User // user without a login
	erin    *harness.User // user without a login or power
	account string
	// lobby and stream are this variant's channels: the homeserver outlives variants,
	// so each needs aliases of its own.
	lobby, stream string
	// metricsURL is the bridge's /metrics on its diagnostics listener.
	metricsURL string
}

func newVariant(t *testing.T, dbType string) *variant {
	t.Helper()
	ctx := context.Background()
	v := &variant{t: t, name: dbType, account: "alice-" + dbType, lobby: "#lobby_" + dbType, stream: "#stream_" + dbType}
	var err error
	if v.net, err = loopnet.New(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.net.Close)
	dbURI := filepath.Join(t.TempDir(), "passerelle.db")
	if dbType == "postgres" {
		uri, drop, err := harness.NewPostgresDB(ctx)
		if err != nil {
			t.Fatalf("creating PostgreSQL database: %v", err)
		}
		t.Cleanup(drop)
		dbURI = uri
	}
	mport, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	v.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	hs := shared.hs
	v.cfgPath = filepath.Join(t.TempDir(), "config.yaml")
	v.logPath = filepath.Join(shared.dir, "bridge-"+dbType+".log")
	if err = shared.stack.WriteConfig(v.cfgPath, harness.BridgeConfigParams{
		Port: shared.port, DatabaseType: dbType, DatabaseURI: dbURI, MetricsListen: fmt.Sprintf("127.0.0.1:%d", mport),
		Permissions: map[string]string{
			hs.Domain:                             "user",
			hs.UserID("alice_" + dbType).String(): "admin",
		},
		Connectors: map[string]any{"loopback": map[string]any{"network_url": v.net.URL}},
	}); err != nil {
		t.Fatal(err)
	}
	v.start()
	for _, u := range []struct {
		dst  **harness.User
		name string
	}{{&v.alice, "alice"}, {&v.dave, "dave"}, {&v.erin, "erin"}} {
		if *u.dst, err = hs.RegisterUser(ctx, u.name+"_"+dbType, false); err != nil {
			t.Fatal(err)
		}
		t.Cleanup((*u.dst).Close)
	}
	return v
}

func (v *variant) start() {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b, err := harness.StartBridge(ctx, shared.bin, v.cfgPath, shared.regPath, v.logPath)
	if err != nil {
		v.t.Fatalf("starting bridge: %v", err)
	}
	v.bridge = b
	v.t.Cleanup(func() {
		if v.t.Failed() {
			v.t.Logf("bridge log tail:\n%s", b.LogTail(60))
		}
		b.Stop()
	})
}

func (v *variant) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	v.t.Cleanup(cancel)
	return ctx
}

// ghost is the Matrix ID of a loopnet user's ghost.
func ghost(remote string) id.UserID {
	return id.NewUserID("loopback_"+id.EncodeUserLocalpart(remote), harness.DefaultDomain)
}

func bot() id.UserID { return id.NewUserID("passerelle", harness.DefaultDomain) }

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

func textFrom(sender id.UserID, body string) func(*event.Event) bool {
	return harness.TextFrom(sender, body)
}

// netText matches a loopnet message with the given text from account.
func netText(account, text string) func(loopnet.Event) bool {
	return func(e loopnet.Event) bool {
		return e.Kind == loopnet.KindMessage && e.Sender == account && e.Text == text
	}
}
