package irc

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc/ircconn"
)

// fakeHost records what the connector hands the core.
type fakeHost struct {
	// textLink is the link PublicTextLink gives ("": the bridge serves none).
	textLink string
	mu       sync.Mutex
	events   []*bridge.RemoteEvent
	added    chan struct{}
	log      zerolog.Logger
}

func newFakeHost() *fakeHost { return &fakeHost{added: make(chan struct{}, 100), log: zerolog.Nop()} }

func (h *fakeHost) QueueRemoteEvent(ctx context.Context, evt *bridge.RemoteEvent) error {
	h.mu.Lock()
	h.events = append(h.events, evt)
	h.mu.Unlock()
	h.added <- struct{}{}
	return nil
}
func (h *fakeHost) ReportState(context.Context, bridge.LoginID, bridge.SessionState, string) {}
func (h *fakeHost) Notify(context.Context, id.UserID, string)                                {}
func (h *fakeHost) NotifyAdmins(context.Context, string)                                     {}
func (h *fakeHost) Database() *dbutil.Database                                               { return nil }
func (h *fakeHost) Log() *zerolog.Logger                                                     { return &h.log }
func (h *fakeHost) GhostMXID(remoteID bridge.RemoteUserID) id.UserID {
	return id.UserID("@irc_" + id.EncodeUserLocalpart(string(remoteID)) + ":example.org")
}
func (h *fakeHost) ParseGhostMXID(id.UserID) (bridge.RemoteUserID, bool)    { return "", false }
func (h *fakeHost) Logins(context.Context) ([]*bridge.Login, error)         { return nil, nil }
func (h *fakeHost) LinkedChats(context.Context) ([]bridge.PortalKey, error) { return nil, nil }
func (h *fakeHost) PublicTextLink(context.Context, string, string) (string, error) {
	return h.textLink, nil
}
func (h *fakeHost) UpdateLoginMetadata(context.Context, bridge.LoginID, json.RawMessage) error {
	return nil
}
func (h *fakeHost) CreateMediaFile(int64) (*bridge.MediaFile, error) {
	return nil, errors.New("IRC receives no files")
}

// reset forgets the events recorded so far.
func (h *fakeHost) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = nil
	for len(h.added) > 0 {
		<-h.added
	}
}

func (h *fakeHost) snapshot() []*bridge.RemoteEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*bridge.RemoteEvent(nil), h.events...)
}

func testNetwork(t *testing.T, grace time.Duration) (*network, *fakeHost) {
	t.Helper()
	host := newFakeHost()
	c := New()
	c.host = host
	c.runCtx = context.Background()
	n := newNetwork(c, &NetworkConfig{Name: "net", Mode: "puppets", NetsplitGrace: grace, MaxLines: 10,
		PowerLevels: PowerLevelMap{Op: 50, HalfOp: 25, Voice: 10}})
	n.bot = ircconn.New(ircconn.Config{Nick: "passbot"}, nil)
	c.networks["net"] = n
	return n, host
}

func line(t *testing.T, raw string) ircmsg.Message {
	t.Helper()
	m, err := ircmsg.ParseLine(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestNetsplit: quits in a netsplit are held; users who come back within the grace
// produce no events at all, the others leave once it ends.
func TestNetsplit(t *testing.T) {
	n, host := testNetwork(t, 50*time.Millisecond)
	ctx := context.Background()
	for _, raw := range []string{
		":passbot!b@h JOIN #c",
		":irc.test 353 passbot = #c :@passbot alice bob",
		":irc.test 366 passbot #c :End",
	} {
		n.handleBotLine(ctx, line(t, raw))
	}
	host.reset() // the membership found on joining
	for _, raw := range []string{
		":alice!a@h QUIT :hub.net leaf.net",
		":bob!b@h QUIT :hub.net leaf.net",
		":alice!a@h JOIN #c",
	} {
		n.handleBotLine(ctx, line(t, raw))
	}
	select {
	case <-host.added:
	case <-time.After(10 * time.Second):
		t.Fatal("no leave after the grace")
	}
	evs := host.snapshot()
	if len(evs) != 1 || evs[0].Type != bridge.RemoteLeave || evs[0].Sender.RemoteID != "net.bob" {
		t.Fatalf("want exactly bob's leave, got %+v", evs)
	}
	// A QUIT inside an IRCv3 netsplit batch is held whatever its reason says.
	n.handleBotLine(ctx, line(t, ":irc.test BATCH +s1 netsplit hub.net leaf.net"))
	n.handleBotLine(ctx, line(t, ":irc.test 353 passbot = #c :carol"))
	n.handleBotLine(ctx, line(t, ":carol!c@h JOIN #c"))
	before := len(host.snapshot())
	n.handleBotLine(ctx, line(t, "@batch=s1 :carol!c@h QUIT :*.net *.split"))
	n.handleBotLine(ctx, line(t, ":irc.test BATCH -s1"))
	n.handleBotLine(ctx, line(t, ":carol!c@h JOIN #c"))
	if got := host.snapshot(); len(got) != before {
		t.Fatalf("a batched netsplit quit and rejoin produced events: %+v", got[before:])
	}
	// An ordinary quit is bridged at once.
	before = len(host.snapshot())
	n.handleBotLine(ctx, line(t, ":alice!a@h QUIT :bye"))
	if evs = host.snapshot(); len(evs) != before+1 || evs[before].Type != bridge.RemoteLeave || evs[before].Reason != "bye" {
		t.Fatalf("ordinary quit not bridged as one leave: %d new events", len(evs)-before)
	}
}

// TestBotLines checks how channel lines become remote events.
func TestBotLines(t *testing.T) {
	n, host := testNetwork(t, time.Minute)
	ctx := context.Background()
	for _, raw := range []string{
		":passbot!b@h JOIN #c",
		":irc.test 353 passbot = #c :@passbot @+Op voiced",
		":irc.test 366 passbot #c :End",
		"@msgid=abc;time=2026-01-02T03:04:05.000Z;account=opacct :Op!o@h PRIVMSG #c :\x02hi\x02 voiced",
		":Op!o@h PRIVMSG #c :\x01ACTION waves\x01",
		":Op!o@h PRIVMSG #c :\x01VERSION\x01",
		":Op!o@h PRIVMSG passbot :private to the bot",
		":irc.server NOTICE #c :server notice",
		":Op!o@h MODE #c +v-o voiced Op",
		":Op!o@h TOPIC #c :new topic",
		":Newbie!n@h JOIN #c newbieacct :Newbie Real",
		":Newbie!n@h NICK Newer",
	} {
		n.handleBotLine(ctx, line(t, raw))
	}
	evs := host.snapshot()
	type want struct {
		typ    bridge.RemoteEventType
		sender string
		check  func(*bridge.RemoteEvent) bool
	}
	wants := []want{
		// Joining, the bot hands over the whole membership (without itself).
		{bridge.RemoteChatInfo, "", func(e *bridge.RemoteEvent) bool {
			m := e.ChatInfo.Members
			return e.ChatInfo.MembersComplete && len(m) == 2 && m[0].RemoteID == "net.op" && *m[0].PowerLevel == 50 &&
				m[1].RemoteID == "net.voiced" && m[1].PowerLevel == nil
		}},
		{bridge.RemoteMessage, "net.op", func(e *bridge.RemoteEvent) bool {
			return e.ID == "msgid:abc" && e.Content.Body == "hi voiced" && e.Content.FormattedBody != "" && e.Sender.Account == "opacct" &&
				e.Timestamp.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) && len(e.Content.Mentions) == 1 && e.Content.Mentions[0] == "net.voiced"
		}},
		{bridge.RemoteMessage, "net.op", func(e *bridge.RemoteEvent) bool { return e.Content.MsgType == "m.emote" && e.Content.Body == "waves" }},
		{bridge.RemotePowerLevel, "net.op", func(e *bridge.RemoteEvent) bool { return e.TargetUser == "net.voiced" && *e.PowerLevel == 10 }},
		{bridge.RemotePowerLevel, "net.op", func(e *bridge.RemoteEvent) bool { return e.TargetUser == "net.op" && *e.PowerLevel == 10 }},
		{bridge.RemoteChatInfo, "net.op", func(e *bridge.RemoteEvent) bool { return e.ChatInfo.Topic == "new topic" }},
		{bridge.RemoteJoin, "net.newbie", func(e *bridge.RemoteEvent) bool {
			return e.Sender.Account == "newbieacct" && e.Sender.RealName == "Newbie Real"
		}},
		{bridge.RemoteLeave, "net.newbie", nil},
		{bridge.RemoteJoin, "net.newer", func(e *bridge.RemoteEvent) bool { return e.Sender.Name == "Newer" }},
	}
	if len(evs) != len(wants) {
		for _, e := range evs {
			t.Logf("%s from %s", e.Type, e.Sender.RemoteID)
		}
		t.Fatalf("got %d events, want %d", len(evs), len(wants))
	}
	for i, w := range wants {
		e := evs[i]
		if e.Type != w.typ || string(e.Sender.RemoteID) != w.sender || (w.check != nil && !w.check(e)) {
			t.Errorf("event %d: got %s from %s (%+v), want %s from %s", i, e.Type, e.Sender.RemoteID, e, w.typ, w.sender)
		}
		if e.Chat.ChatID != "net/#c" {
			t.Errorf("event %d in chat %q", i, e.Chat.ChatID)
		}
	}
}

func TestIDs(t *testing.T) {
	cases := []struct{ in, want string }{
		{"#Go", "net/#go"}, {"#[Test]", "net/#{test}"}, {"#a\\b^", "net/#a|b~"},
	}
	n, _ := testNetwork(t, time.Minute)
	for _, c := range cases {
		if got := n.channelChatID(c.in); string(got) != c.want {
			t.Errorf("channelChatID(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if p, err := parseChatID("net/pm/bob"); err != nil || p.nick != "bob" || p.network != "net" {
		t.Errorf("parseChatID pm: %+v %v", p, err)
	}
	if p, err := parseChatID("net/#go"); err != nil || p.channel != "#go" {
		t.Errorf("parseChatID channel: %+v %v", p, err)
	}
	for in, want := range map[string]string{"alice": "alice", "Alice Smith": "Alice_Smith", "1st": "M1st", "é": "_"} {
		if got := sanitizeNick(in, 30); got != want {
			t.Errorf("sanitizeNick(%q) = %q, want %q", in, got, want)
		}
	}
	if userName("alice[m]") != "alicem" || userName("[]") != "matrix" {
		t.Error("userName does not keep to letters and digits")
	}
	ascii := newNetwork(n.c, &NetworkConfig{Name: "net", Casemapping: "ascii"})
	if ascii.userID("A[b]") != "net.a[b]" || n.userID("A[b]") != "net.a{b}" {
		t.Errorf("casemapping not applied: ascii %q, rfc1459 %q", ascii.userID("A[b]"), n.userID("A[b]"))
	}
	if foldFor("rfc1459-strict")("A^") != "a^" || foldFor("nonsense") != nil {
		t.Error("casemapping table wrong")
	}
}

// TestMaxConnections: past the network's connection budget, users get no puppet of
// their own (the core relays them instead).
func TestMaxConnections(t *testing.T) {
	n, _ := testNetwork(t, time.Minute)
	n.cfg.MaxConnections = 1
	key := n.channelKey("#c")
	first, err := n.c.AutoLogin(context.Background(), "@a:example.org", key)
	if err != nil || first == nil {
		t.Fatalf("first auto-login = %v, %v", first, err)
	}
	if _, err = n.loadPuppet(&bridge.Login{Connector: "irc", ID: first.ID, UserMXID: "@a:example.org", Metadata: first.Metadata}); err != nil {
		t.Fatal(err)
	}
	if second, err := n.c.AutoLogin(context.Background(), "@b:example.org", key); err != nil || second != nil {
		t.Fatalf("auto-login past the limit = %v, %v; want none", second, err)
	}
}

// TestOwnPuppetsQuitting: the bridge disconnecting its own puppets (shutdown, idle)
// makes the bot see them quit; that is never a remote user leaving. A real user who
// quits just after is still bridged.
func TestOwnPuppetsQuitting(t *testing.T) {
	n, host := testNetwork(t, time.Minute)
	ctx := context.Background()
	p, err := n.loadPuppet(&bridge.Login{Connector: "irc", ID: "net/@a:example.org", UserMXID: "@a:example.org",
		Metadata: json.RawMessage(`{"nick":"a[m]"}`)})
	if err != nil {
		t.Fatal(err)
	}
	p.nick = "a[m]"
	n.byNick[n.fold("a[m]")] = p
	for _, raw := range []string{
		":passbot!b@h JOIN #c",
		":irc.test 353 passbot = #c :@passbot a[m] bob",
		":irc.test 366 passbot #c :End",
	} {
		n.handleBotLine(ctx, line(t, raw))
	}
	// The membership handed over leaves out our puppet.
	if evs := host.snapshot(); len(evs) != 1 || len(evs[0].ChatInfo.Members) != 1 || evs[0].ChatInfo.Members[0].RemoteID != "net.bob" {
		t.Fatalf("membership on joining: %+v", evs)
	}
	host.reset()
	p.Disconnect()
	n.handleBotLine(ctx, line(t, ":a[m]!a@h QUIT :Disconnected by the bridge"))
	if evs := host.snapshot(); len(evs) != 0 {
		t.Fatalf("our own puppet's QUIT became %d events: %+v", len(evs), evs[0])
	}
	n.handleBotLine(ctx, line(t, ":bob!b@h QUIT :bye"))
	if evs := host.snapshot(); len(evs) != 1 || evs[0].Type != bridge.RemoteLeave || evs[0].Sender.RemoteID != "net.bob" {
		t.Fatalf("want bob's leave only, got %+v", evs)
	}
	// Once its QUIT was seen the nick is free again: someone else using it is a ghost.
	n.handleBotLine(ctx, line(t, ":a[m]!x@h JOIN #c"))
	if evs := host.snapshot(); len(evs) != 2 || evs[1].Type != bridge.RemoteJoin {
		t.Fatalf("a stranger taking a departed puppet's nick was not bridged: %+v", evs)
	}
}

// TestPuppetChannelsKept: the channels a puppet is in are kept in its login, so a
// puppet loaded after a restart knows what to rejoin.
func TestPuppetChannelsKept(t *testing.T) {
	n, _ := testNetwork(t, time.Minute)
	var saved json.RawMessage
	n.c.host = &metaHost{fakeHost: newFakeHost(), save: func(m json.RawMessage) { saved = m }}
	ctx := context.Background()
	p, err := n.loadPuppet(&bridge.Login{Connector: "irc", ID: "net/@a:example.org", UserMXID: "@a:example.org",
		Metadata: json.RawMessage(`{"nick":"a[m]","sasl_user":"a","sasl_password":"pw"}`)})
	if err != nil {
		t.Fatal(err)
	}
	conn := ircconn.New(ircconn.Config{Nick: "a[m]"}, nil)
	p.handleLine(ctx, conn, line(t, ":a[m]!a@h JOIN #Two"))
	p.handleLine(ctx, conn, line(t, ":a[m]!a@h JOIN #one"))
	p.handleLine(ctx, conn, line(t, ":a[m]!a@h JOIN #gone"))
	p.handleLine(ctx, conn, line(t, ":a[m]!a@h PART #gone :bye"))
	var meta puppetMeta
	if err = json.Unmarshal(saved, &meta); err != nil {
		t.Fatal(err)
	}
	if strings.Join(meta.Channels, ",") != "#Two,#one" || meta.SASLPassword != "pw" || meta.Nick != "a[m]" {
		t.Fatalf("saved metadata %s", saved)
	}
	reloaded, err := n.loadPuppet(&bridge.Login{Connector: "irc", ID: "net/@b:example.org", UserMXID: "@b:example.org", Metadata: saved})
	if err != nil {
		t.Fatal(err)
	}
	if len(reloaded.channels) != 2 || reloaded.channels["#two"] != "#Two" || reloaded.channels["#one"] != "#one" {
		t.Fatalf("reloaded puppet would rejoin %v", reloaded.channels)
	}
}

// metaHost records login metadata updates.
type metaHost struct {
	*fakeHost
	save func(json.RawMessage)
}

func (h *metaHost) UpdateLoginMetadata(_ context.Context, _ bridge.LoginID, m json.RawMessage) error {
	h.save(m)
	return nil
}
