package bridge

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

// watchingPlugin records the portals it is told about.
type watchingPlugin struct{ seen []*NewPortal }

func (w *watchingPlugin) Info() PluginInfo                                   { return PluginInfo{Name: "watcher"} }
func (w *watchingPlugin) Init(context.Context, PluginHost, *yaml.Node) error { return nil }
func (w *watchingPlugin) Start(context.Context) error                        { return nil }
func (w *watchingPlugin) Stop(context.Context)                               {}
func (w *watchingPlugin) PortalCreated(_ context.Context, p *NewPortal)      { w.seen = append(w.seen, p) }

var _ PortalWatchingPlugin = (*watchingPlugin)(nil)

// TestPendingPortalWatch: a portal made just before a crash, whose plugins
// were never told, is told about at the next start, once.
func TestPendingPortalWatch(t *testing.T) {
	ctx := context.Background()
	db := dbtest.OpenSQLite(t)
	w := &watchingPlugin{}
	br := &Bridge{DB: db, Log: zerolog.Nop(), order: []string{"net"},
		connectors: map[string]*connectorHost{"net": {conn: &fakeConnector{name: "net"}}}}
	br.plugins = []*pluginHost{{br: br, plugin: w}}
	key := PortalKey{Connector: "net", ChatID: "chat", Receiver: "login"}
	p := &NewPortal{Key: key, RoomID: "!room:example.org", LoginOwner: "@owner:example.org", Trigger: TriggerIncoming,
		Info: &ChatInfo{Key: key, Name: "Contact", Avatar: &Media{Data: []byte("big picture")}, Members: []ChatMember{{RemoteID: "x"}}}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.UpsertPortal(ctx, &database.PortalRow{Connector: "net", ChatID: "chat", Receiver: "login"}))
	must(db.InsertRoom(ctx, &database.RoomRow{RoomID: p.RoomID.String(), Connector: "net", ChatID: "chat", Receiver: "login",
		Kind: database.RoomPortal, PendingWatch: br.pendingWatch(p)}))
	// The crash: nobody was told. The next start tells the watcher.
	br.resumePortalWatches(ctx)
	if len(w.seen) != 1 {
		t.Fatalf("watcher told %d times, want once", len(w.seen))
	}
	got := w.seen[0]
	if got.RoomID != p.RoomID || got.Key != key || got.Trigger != TriggerIncoming || got.LoginOwner != p.LoginOwner ||
		got.Info == nil || got.Info.Name != "Contact" || got.Info.Avatar != nil {
		t.Fatalf("watcher told %+v (info %+v)", got, got.Info)
	}
	pending, err := db.PendingWatches(ctx)
	must(err)
	if len(pending) != 0 {
		t.Fatalf("still pending after the telling: %v", pending)
	}
	br.resumePortalWatches(ctx)
	if len(w.seen) != 1 {
		t.Fatal("a portal was told about twice")
	}
	// Without a watcher nothing is kept.
	plain := &Bridge{DB: db, Log: zerolog.Nop(), order: []string{"net"},
		connectors: map[string]*connectorHost{"net": {conn: &fakeConnector{name: "net"}}}}
	if got := plain.pendingWatch(&NewPortal{Key: key, RoomID: id.RoomID("!x:example.org")}); got != "" {
		t.Fatalf("pending mark %q without any watcher", got)
	}
}
