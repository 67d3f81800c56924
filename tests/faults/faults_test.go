// Package faults is the fault-injection suite: messages stream both ways between a
// Matrix room and an IRC channel (real Dendrite, real ngircd, real PostgreSQL) while one
// part goes away — the database, the homeserver, the IRC server — or misbehaves, and
// every test then asserts that each message arrived exactly once, in order, and that
// the bridge's peak memory stayed under a stated bound.
package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/tests/harness"
)

// stack is a homeserver, an IRC server, a PostgreSQL database and the bridge, with
// proxies where a test cuts a connection: between the bridge and PostgreSQL (the
// shared server other packages' tests use cannot be restarted under them; to the
// bridge, a cut proxy is a database restart: its connections drop and new ones are
// refused until it is back), between the bridge and ngircd (so a test decides when
// the bridge may reconnect after the IRC server restarted), and between the bridge and
// Dendrite (so a test can make the homeserver slow).
type stack struct {
	hs        *harness.Homeserver
	hsProxy   *harness.HTTPProxy
	reg       *appservice.Registration
	port      int
	ngircd    *harness.IRCServer
	inspircd  *harness.IRCServer
	ircProxy  *harness.TCPProxy
	pgProxy   *harness.TCPProxy
	bridge    *harness.Bridge
	bridgeLog string
}

var shared *stack // set once by TestMain, read-only afterwards

// retryWindow is the bridge's bridge.retry_window here: short, so an outage outlasts it.
const retryWindow = 3 * time.Second

// maxFileBytes is the bridge's bridge.max_file_bytes here: smaller than the file
// TestFileOverCapAsLink sends, which IRC still gets as a link.
const maxFileBytes = 4096

// maxQueuePerChat is the bridge's bridge.max_queue_per_chat here: small, so a flood
// soon outruns a chat's queue, and a Matrix room's.
const maxQueuePerChat = 50

// slowRate is slownet's flood control, lines a second per connection.
const slowRate = 5

// peakRSSBound is the bound every test states for the bridge's peak resident memory.
const peakRSSBound = 200 << 20

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults setup failed:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "passerelle-faults-")
	if err != nil {
		return 0, err
	}
	s := &stack{}
	if s.ngircd, err = harness.StartIRCServer(ctx, "ngircd", filepath.Join(dir, "ngircd")); err != nil {
		return 0, err
	}
	defer s.ngircd.Stop()
	// inspircd takes a flood at full speed (its test config sets no flood limits).
	if s.inspircd, err = harness.StartIRCServer(ctx, "inspircd", filepath.Join(dir, "inspircd")); err != nil {
		return 0, err
	}
	defer s.inspircd.Stop()
	if s.ircProxy, err = harness.NewTCPProxy(s.ngircd.Addr); err != nil {
		return 0, err
	}
	defer s.ircProxy.Close()
	pgURI, drop, err := harness.NewPostgresDB(ctx)
	if err != nil {
		return 0, err
	}
	defer drop()
	u, err := url.Parse(pgURI)
	if err != nil {
		return 0, err
	}
	if s.pgProxy, err = harness.NewTCPProxy(u.Host); err != nil {
		return 0, err
	}
	defer s.pgProxy.Close()
	u.Host = s.pgProxy.Addr
	bin, err := harness.BuildBridge(ctx)
	if err != nil {
		return 0, err
	}
	if s.port, err = harness.FreePort(); err != nil {
		return 0, err
	}
	params := harness.BridgeConfigParams{Port: s.port, DatabaseType: "postgres", DatabaseURI: u.String(),
		LogLevel: "debug",
		BridgeExtra: map[string]any{"retry_window": retryWindow.String(), "max_file_bytes": maxFileBytes,
			"max_queue_per_chat": maxQueuePerChat},
		PublicAddress: fmt.Sprintf("http://127.0.0.1:%d", s.port),
		Connectors: map[string]any{"irc": map[string]any{"connects_per_second": 50, "networks": []map[string]any{
			{"name": "faultnet", "address": s.ircProxy.Addr, "bot_nick": "faultbot", "messages_per_second": 50, "burst": 50},
			{"name": "floodnet", "address": s.inspircd.Addr, "bot_nick": "floodbot", "messages_per_second": 50, "burst": 50},
			// slownet's flood control is far slower than a Matrix user can send.
			{"name": "slownet", "address": s.ngircd.Addr, "bot_nick": "slowbot", "messages_per_second": slowRate, "burst": slowRate},
		}}}}
	st, err := harness.StartStack(ctx, dir, bin, params)
	if err != nil {
		return 0, err
	}
	defer func() { st.HS.Stop() }()
	s.hs, s.reg = st.HS, st.Reg
	if s.hsProxy, err = harness.NewHTTPProxy(st.HS.URL); err != nil {
		return 0, err
	}
	defer s.hsProxy.Close()
	params.HomeserverURL = s.hsProxy.URL
	cfgPath := filepath.Join(dir, "config.yaml")
	if err = st.WriteConfig(cfgPath, params); err != nil {
		return 0, err
	}
	s.bridgeLog = filepath.Join(dir, "bridge.log")
	if s.bridge, err = harness.StartBridge(ctx, bin, cfgPath, st.RegPath, s.bridgeLog); err != nil {
		return 0, err
	}
	defer func() { s.bridge.Stop() }()
	shared = s
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "faults logs kept in %s\n--- bridge log tail ---\n%s\n", dir, s.bridge.LogTail(60))
	} else {
		defer os.RemoveAll(dir)
	}
	return code, nil
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ghost(nick string) id.UserID {
	return id.NewUserID("irc_"+id.EncodeUserLocalpart("faultnet."+strings.ToLower(nick)), harness.DefaultDomain)
}

// conversation is one Matrix user and one IRC user talking in one bridged channel,
// keeping what each sent so the test can check what the other received.
type conversation struct {
	t       *testing.T
	channel string
	user    *harness.User
	room    id.RoomID
	puppet  string // the Matrix user's nick on IRC
	nick    string
	irc     *harness.IRCClient
	// earlier are IRC connections of nick replaced after a server restart; what they
	// received counts too.
	earlier  []*harness.IRCClient
	toIRC    []string
	toMatrix []string
	// healed is when the fault ended (zero before a fault): waitAll reports how long
	// everything took to arrive from then on.
	healed time.Time
}

func newConversation(t *testing.T, ctx context.Context, name string) *conversation {
	t.Helper()
	c := &conversation{t: t, channel: "#" + name, puppet: name + "[m]", nick: "irc" + name}
	c.irc = c.dialIRC(ctx)
	u, err := shared.hs.RegisterUser(ctx, name, false)
	must(t, err)
	t.Cleanup(u.Close)
	c.user = u
	c.room, err = u.JoinAndWait(ctx, "#irc_faultnet_"+c.channel+":"+harness.DefaultDomain)
	must(t, err)
	// The first message opens the Matrix user's puppet; wait for it before streaming.
	c.fromMatrix(ctx, name+" is here")
	c.waitAll(ctx)
	return c
}

func (c *conversation) dialIRC(ctx context.Context) *harness.IRCClient {
	c.t.Helper()
	irc, err := harness.DialIRC(ctx, shared.ngircd.Addr, c.nick)
	must(c.t, err)
	c.t.Cleanup(irc.Close)
	must(c.t, irc.Join(ctx, c.channel))
	return irc
}

func (c *conversation) fromMatrix(ctx context.Context, body string) {
	c.t.Helper()
	_, err := c.user.SendText(ctx, c.room, body)
	must(c.t, err)
	c.toIRC = append(c.toIRC, body)
}

func (c *conversation) fromIRC(body string) {
	c.t.Helper()
	must(c.t, c.irc.Privmsg(c.channel, body))
	c.toMatrix = append(c.toMatrix, body)
}

// burst sends n messages each way, interleaved, labelled with phase.
func (c *conversation) burst(ctx context.Context, phase string, n int, matrix, irc bool) {
	c.t.Helper()
	for i := range n {
		if matrix {
			c.fromMatrix(ctx, fmt.Sprintf("%s m%d", phase, i))
		}
		if irc {
			c.fromIRC(fmt.Sprintf("%s i%d", phase, i))
		}
	}
}

// receivedOnIRC is what the IRC user's connections got from the Matrix user's puppet.
func (c *conversation) receivedOnIRC() []string {
	var out []string
	for _, cl := range append(append([]*harness.IRCClient(nil), c.earlier...), c.irc) {
		for _, m := range cl.Lines() {
			if m.Command == "PRIVMSG" && strings.EqualFold(m.Nick(), c.puppet) && len(m.Params) == 2 &&
				strings.EqualFold(m.Params[0], c.channel) {
				out = append(out, m.Params[1])
			}
		}
	}
	return out
}

// receivedOnMatrix is what the Matrix user saw from the IRC user's ghost.
func (c *conversation) receivedOnMatrix() []string {
	var out []string
	for _, evt := range c.user.Events(c.room) {
		if evt.Type == event.EventMessage && evt.Sender == ghost(c.nick) {
			out = append(out, evt.Content.AsMessage().Body)
		}
	}
	return out
}

// waitAll waits until the last message sent each way has arrived, then checks that
// everything arrived exactly once and in order, that no one was told a message was not
// bridged, and that the bridge's peak memory stayed under the bound.
func (c *conversation) waitAll(ctx context.Context) {
	c.t.Helper()
	if n := len(c.toIRC); n > 0 {
		_, err := c.irc.Wait(ctx, harness.PrivmsgFrom(c.puppet, c.channel, c.toIRC[n-1]))
		must(c.t, err)
	}
	if n := len(c.toMatrix); n > 0 {
		_, err := c.user.WaitEvent(ctx, c.room, harness.TextFrom(ghost(c.nick), c.toMatrix[n-1]))
		must(c.t, err)
	}
	if !c.healed.IsZero() {
		c.t.Logf("recovered: every message delivered %s after the fault ended", time.Since(c.healed).Round(time.Millisecond))
	}
	if got := c.receivedOnIRC(); !equal(got, c.toIRC) {
		c.t.Errorf("IRC received (Matrix → IRC):\n%s\nwant:\n%s", strings.Join(got, " | "), strings.Join(c.toIRC, " | "))
	}
	if got := c.receivedOnMatrix(); !equal(got, c.toMatrix) {
		c.t.Errorf("Matrix received (IRC → Matrix):\n%s\nwant:\n%s", strings.Join(got, " | "), strings.Join(c.toMatrix, " | "))
	}
	for _, evt := range c.user.Events(c.room) {
		if evt.Type == event.EventMessage && strings.Contains(evt.Content.AsMessage().Body, "not bridged") {
			c.t.Errorf("a sender was told a message was not bridged: %q", evt.Content.AsMessage().Body)
		}
	}
	if peak := peakRSS(c.t); peak > peakRSSBound {
		c.t.Errorf("bridge peak RSS %d MiB, bound %d MiB", peak>>20, peakRSSBound>>20)
	} else {
		c.t.Logf("bridge peak RSS so far: %.1f MiB", float64(peak)/(1<<20))
	}
}

func msgParam(m ircmsg.Message, i int) string {
	if i < len(m.Params) {
		return m.Params[i]
	}
	return ""
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// peakRSS is the bridge process's high-water resident set size (VmHWM).
func peakRSS(t *testing.T) int64 {
	t.Helper()
	kb, err := harness.ProcStatusKB(shared.bridge.Pid(), "VmHWM:")
	must(t, err)
	return kb << 10
}

// TestPostgresRestart: the database goes away mid-stream for a few seconds (connections
// dropped, new ones refused) while messages keep coming both ways.
func TestPostgresRestart(t *testing.T) {
	ctx := testCtx(t)
	c := newConversation(t, ctx, "pgrestart")
	c.burst(ctx, "before", 10, true, true)
	shared.pgProxy.Cut()
	c.burst(ctx, "during", 10, true, true)
	time.Sleep(2 * time.Second) // the outage's length, not a wait for a result
	shared.pgProxy.Release()
	c.healed = time.Now()
	c.burst(ctx, "after", 10, true, true)
	c.waitAll(ctx)
}

// TestPostgresOutageOutlastsRetryWindow: the database stays away for several times the
// retry window; failures meanwhile are not the events' fault, so none is given up.
func TestPostgresOutageOutlastsRetryWindow(t *testing.T) {
	ctx := testCtx(t)
	c := newConversation(t, ctx, "pglong")
	c.burst(ctx, "before", 5, true, true)
	shared.pgProxy.Cut()
	c.burst(ctx, "during", 5, true, true)
	time.Sleep(4 * retryWindow) // the outage's length, not a wait for a result
	shared.pgProxy.Release()
	c.healed = time.Now()
	c.burst(ctx, "after", 5, true, true)
	c.waitAll(ctx)
}

// TestHomeserverRestart: Dendrite is killed mid-stream and started again. Lines from
// IRC meanwhile wait for it (outlasting the retry window); the Matrix user sends again
// once their homeserver is back.
func TestHomeserverRestart(t *testing.T) {
	ctx := testCtx(t)
	c := newConversation(t, ctx, "hsrestart")
	c.burst(ctx, "before", 10, true, true)
	done := make(chan error, 1)
	go func() { done <- shared.hs.Restart(ctx, 2*retryWindow) }()
	c.burst(ctx, "during", 10, false, true)
	must(t, <-done)
	c.healed = time.Now()
	c.burst(ctx, "after", 10, true, true)
	c.waitAll(ctx)
}

// TestIRCServerRestart: ngircd is stopped mid-stream and started again. Matrix messages
// meanwhile wait for the puppet to reconnect and rejoin; none is sent twice.
func TestIRCServerRestart(t *testing.T) {
	ctx := testCtx(t)
	c := newConversation(t, ctx, "ircrestart")
	c.burst(ctx, "before", 10, true, true)
	c.waitAll(ctx)
	// The bridge may reconnect only once the IRC user is back in the channel, so what
	// was sent meanwhile has someone to reach.
	shared.ircProxy.Hold()
	shared.ngircd.Stop()
	c.burst(ctx, "during", 10, true, false)
	must(t, shared.ngircd.Start(ctx))
	c.earlier = append(c.earlier, c.irc)
	c.irc = c.dialIRC(ctx)
	shared.ircProxy.Release()
	c.healed = time.Now()
	// IRC keeps no history: what is said before the bot is back in the channel reaches
	// nobody on the bridge's side. The IRC user talks once it is there.
	_, err := c.irc.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "JOIN" && strings.EqualFold(m.Nick(), "faultbot") && strings.EqualFold(msgParam(m, 0), c.channel)
	})
	must(t, err)
	c.burst(ctx, "after", 10, true, true)
	c.waitAll(ctx)
}

// TestFileOverCapAsLink: IRC gets files as links, so a file larger than
// bridge.max_file_bytes is not fetched when it is bridged, nor refused; the link serves
// it whole, streamed.
func TestFileOverCapAsLink(t *testing.T) {
	ctx := testCtx(t)
	c := newConversation(t, ctx, "bigfile")
	data := []byte(strings.Repeat("0123456789abcdef", 4*maxFileBytes/16))
	up, err := c.user.UploadBytesWithName(ctx, data, "application/octet-stream", "big.bin")
	must(t, err)
	_, err = c.user.SendMessageEvent(ctx, c.room, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgFile,
		Body: "big.bin", URL: up.ContentURI.CUString(), Info: &event.FileInfo{Size: len(data)}})
	must(t, err)
	line, err := c.irc.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "PRIVMSG" && strings.EqualFold(m.Nick(), c.puppet) && strings.Contains(msgParam(m, 1), "/_passerelle/media/")
	})
	must(t, err)
	text := msgParam(line, 1)
	link := text[strings.Index(text, "http"):]
	resp, err := http.Get(link)
	must(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	must(t, err)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("the link served %d, %d bytes; want 200 and the %d-byte file", resp.StatusCode, len(body), len(data))
	}
	for _, evt := range c.user.Events(c.room) {
		if evt.Type == event.EventMessage && strings.Contains(evt.Content.AsMessage().Body, "larger than") {
			t.Errorf("a file sent as a link was refused for its size: %q", evt.Content.AsMessage().Body)
		}
	}
}

// TestSlowClients: connections to the appservice listener that never finish their
// request headers (slowloris), or finish one request and then idle, neither stop the
// bridge serving the homeserver nor stay open: the bridge closes them.
func TestSlowClients(t *testing.T) {
	ctx := testCtx(t)
	addr := fmt.Sprintf("127.0.0.1:%d", shared.port)
	var conns []net.Conn
	for i := range 100 {
		conn, err := net.Dial("tcp", addr)
		must(t, err)
		t.Cleanup(func() { conn.Close() })
		_, err = fmt.Fprintf(conn, "PUT /_matrix/app/v1/transactions/slow%d HTTP/1.1\r\nHost: bridge\r\nX-Slow: ", i)
		must(t, err)
		conns = append(conns, conn)
	}
	idle, err := net.Dial("tcp", addr)
	must(t, err)
	t.Cleanup(func() { idle.Close() })
	_, err = fmt.Fprint(idle, "GET /_passerelle/live HTTP/1.1\r\nHost: bridge\r\n\r\n")
	must(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("keep-alive request: %d, close %v", resp.StatusCode, resp.Close)
	}
	conns = append(conns, idle)
	c := newConversation(t, ctx, "slowloris")
	c.burst(ctx, "while slow clients hang", 5, true, true)
	c.waitAll(ctx)
	deadline, _ := ctx.Deadline()
	for i, conn := range conns {
		must(t, conn.SetReadDeadline(deadline)) // a bound on a broken server, not what is tested
		_, err := io.Copy(io.Discard, conn)
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			t.Fatalf("slow or idle connection %d was still open at the test's deadline", i)
		}
	}
}

// TestMalformedEventInTransaction: a transaction holding events with wrongly typed
// fields among good ones is answered 200; the good ones are bridged, in order, and the
// room goes on (the homeserver would retry a refused transaction forever, and
// everything behind it would wait).
func TestMalformedEventInTransaction(t *testing.T) {
	ctx := testCtx(t)
	c := newConversation(t, ctx, "malformed")
	c.burst(ctx, "before", 3, true, true)
	c.waitAll(ctx)
	good := func(n int) map[string]any {
		body := fmt.Sprintf("pushed good %d", n)
		c.toIRC = append(c.toIRC, body)
		return map[string]any{"type": "m.room.message", "room_id": c.room, "sender": c.user.UserID,
			"event_id": fmt.Sprintf("$malformed-good-%d", n), "origin_server_ts": time.Now().UnixMilli(),
			"content": map[string]any{"msgtype": "m.text", "body": body}}
	}
	first := good(1)
	badTS := map[string]any{"type": "m.room.message", "room_id": c.room, "sender": c.user.UserID,
		"event_id": "$malformed-bad-ts", "origin_server_ts": "yesterday", "content": map[string]any{"msgtype": "m.text", "body": "bad ts"}}
	badContent := map[string]any{"type": "m.room.message", "room_id": c.room, "sender": c.user.UserID,
		"event_id": "$malformed-bad-content", "origin_server_ts": time.Now().UnixMilli(), "content": "not an object"}
	badSender := map[string]any{"type": "m.room.message", "room_id": c.room, "sender": 42,
		"event_id": "$malformed-bad-sender", "origin_server_ts": time.Now().UnixMilli(), "content": map[string]any{"msgtype": "m.text", "body": "bad sender"}}
	second := good(2)
	must(t, harness.PushTransaction(ctx, shared.port, shared.reg.ServerToken, "malformed-"+c.room.String(),
		map[string]any{"events": []any{first, badTS, "not an event", badContent, badSender, second}}))
	// waitAll finds the malformed ones missing and the good ones once, in order.
	c.burst(ctx, "after", 3, true, true)
	c.waitAll(ctx)
}
