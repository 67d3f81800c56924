package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
	"github.com/passerelle/passerelle/bridge/queue"
)

const testHSToken = "hs-secret-token"

type inboxFixture struct {
	br      *Bridge
	db      *database.Database
	srv     *httptest.Server
	handled chan database.QueueItem
	// hold, when set, makes items of holdKind (default remote) wait for a value (or the
	// end of the queue).
	hold     chan struct{}
	holdKind atomic.Value
	// notices are what rooms were told of events dropped ("<room> <text>").
	notices chan string
}

// newInboxFixture builds the smallest Bridge that can serve the appservice API: config,
// database, a queue whose handler records what it is given, and the ready channel.
func newInboxFixture(t *testing.T, maxQueue int, maxBody int64) *inboxFixture {
	t.Helper()
	cfg := testConfig()
	cfg.AppService.HSToken = testHSToken
	cfg.AppService.MaxBodyBytes = maxBody
	cfg.Bridge.MaxQueue = maxQueue
	cfg.Bridge.MaxQueuePerChat = 1000
	db := dbtest.OpenSQLite(t)
	f := &inboxFixture{db: db, handled: make(chan database.QueueItem, 100)}
	f.holdKind.Store(kindRemote)
	f.br = &Bridge{Config: cfg, DB: db, Log: zerolog.Nop(), ready: make(chan struct{})}
	loops, err := NewLoopGuard(cfg, "passerelle:test")
	if err != nil {
		t.Fatal(err)
	}
	f.br.loops = loops
	f.br.AS = appservice.Create()
	f.br.AS.Registration = &appservice.Registration{SenderLocalpart: "passerelle"}
	f.br.AS.HomeserverDomain = "example.org"
	f.br.queue = queue.New(db, func(ctx context.Context, it database.QueueItem) error {
		if kind, _ := f.holdKind.Load().(string); it.Kind == kind && f.hold != nil {
			select {
			case <-f.hold:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		f.handled <- it
		return nil
	}, func(_ context.Context, it database.QueueItem, err error) {
		t.Errorf("unexpected give-up on item %d: %v", it.Seq, err)
	}, zerolog.Nop())
	if err := f.br.queue.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.br.queue.StopGrace = 10 * time.Millisecond
	t.Cleanup(f.br.queue.Stop)
	f.br.roomOverflow = newRoomOverflow(f.br, prometheus.NewCounter(prometheus.CounterOpts{Name: "dropped"}))
	f.notices = make(chan string, 10)
	f.br.roomOverflow.notify = func(_ context.Context, roomID id.RoomID, text string) { f.notices <- roomID.String() + " " + text }
	f.br.bgCtx = context.Background()
	f.srv = httptest.NewServer(f.br.httpHandler())
	t.Cleanup(f.srv.Close)
	return f
}

type matrixErr struct {
	ErrCode string `json:"errcode"`
	Error   string `json:"error"`
}

// do sends a request and returns the status and errcode (if any).
func (f *inboxFixture) do(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var me matrixErr
	if resp.StatusCode != http.StatusOK {
		if err = json.Unmarshal(data, &me); err != nil {
			t.Fatalf("%s %s: status %d with non-JSON body %q", method, path, resp.StatusCode, data)
		}
	} else if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, me.ErrCode
}

func (f *inboxFixture) putTxn(t *testing.T, txnID, body string) (int, string) {
	t.Helper()
	return f.do(t, http.MethodPut, "/_matrix/app/v1/transactions/"+txnID, testHSToken, body)
}

func msgEvent(eventID, roomID, body string) map[string]any {
	return map[string]any{
		"type": "m.room.message", "event_id": eventID, "room_id": roomID, "sender": "@alice:example.org",
		"origin_server_ts": 1700000000000, "content": map[string]any{"msgtype": "m.text", "body": body},
	}
}

func typingEvent(roomID string, users ...string) map[string]any {
	return map[string]any{"type": "m.typing", "room_id": roomID, "content": map[string]any{"user_ids": users}}
}

func txnBody(t *testing.T, fields map[string]any) string {
	t.Helper()
	data, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// handledEvent waits for the next handled item and decodes its event.
func (f *inboxFixture) next(t *testing.T) (database.QueueItem, *event.Event) {
	t.Helper()
	var it database.QueueItem
	select {
	case it = <-f.handled:
	case <-time.After(10 * time.Second): // a bound on a broken queue, not an assertion
		t.Fatal("timed out waiting for a handled queue item")
	}
	var evt event.Event
	if err := json.Unmarshal(it.Payload, &evt); err != nil {
		t.Fatalf("queued payload is not an event: %v (%s)", err, it.Payload)
	}
	return it, &evt
}

func TestInboxAuth(t *testing.T) {
	f := newInboxFixture(t, 100, 1<<20)
	body := txnBody(t, map[string]any{"events": []any{msgEvent("$auth", "!r:example.org", "x")}})
	tests := []struct {
		name       string
		path       string
		header     string
		wantStatus int
		wantCode   string
	}{
		{"missing token", "/_matrix/app/v1/transactions/a1", "", 401, "M_MISSING_TOKEN"},
		{"wrong token", "/_matrix/app/v1/transactions/a2", "Bearer nope", 403, "M_FORBIDDEN"},
		{"token prefix", "/_matrix/app/v1/transactions/a3", "Bearer " + testHSToken[:5], 403, "M_FORBIDDEN"},
		{"token with suffix", "/_matrix/app/v1/transactions/a4", "Bearer " + testHSToken + "x", 403, "M_FORBIDDEN"},
		{"wrong query token", "/_matrix/app/v1/transactions/a5?access_token=nope", "", 403, "M_FORBIDDEN"},
		{"not a bearer header", "/_matrix/app/v1/transactions/a6", "Basic " + testHSToken, 401, "M_MISSING_TOKEN"},
		{"wrong token on ping", "/_matrix/app/v1/ping", "Bearer nope", 403, "M_FORBIDDEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodPut
			if strings.HasSuffix(tt.path, "/ping") {
				method = http.MethodPost
			}
			req, err := http.NewRequest(method, f.srv.URL+tt.path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := f.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var me matrixErr
			if err = json.NewDecoder(resp.Body).Decode(&me); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || me.ErrCode != tt.wantCode {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, me.ErrCode, tt.wantStatus, tt.wantCode)
			}
		})
	}
	if n, err := f.db.QueueLength(context.Background()); err != nil || n != 0 {
		t.Errorf("unauthenticated transactions stored %d items (%v)", n, err)
	}

	// The right token works in the header, in the legacy query parameter, and on the
	// legacy path.
	okTests := []struct{ path, token string }{
		{"/_matrix/app/v1/transactions/ok1", testHSToken},
		{"/_matrix/app/v1/transactions/ok2?access_token=" + testHSToken, ""},
		{"/transactions/ok3", testHSToken},
	}
	for i, tt := range okTests {
		b := txnBody(t, map[string]any{"events": []any{msgEvent(fmt.Sprintf("$ok%d", i), "!r:example.org", "x")}})
		if status, code := f.do(t, http.MethodPut, tt.path, tt.token, b); status != 200 {
			t.Errorf("PUT %s: %d %s, want 200", tt.path, status, code)
		}
		if _, evt := f.next(t); evt.ID.String() != fmt.Sprintf("$ok%d", i) {
			t.Errorf("PUT %s queued %s", tt.path, evt.ID)
		}
	}
	if status, code := f.do(t, http.MethodPost, "/_matrix/app/v1/ping", testHSToken, `{}`); status != 200 {
		t.Errorf("ping with the right token: %d %s", status, code)
	}
}

func TestInboxBadBodies(t *testing.T) {
	const maxBody = 2048
	f := newInboxFixture(t, 100, maxBody)
	big := txnBody(t, map[string]any{"events": []any{msgEvent("$big", "!r:example.org", strings.Repeat("x", maxBody))}})
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"malformed JSON", `{"events": [`, 400, "M_NOT_JSON"},
		{"not an object", `"hello"`, 400, "M_NOT_JSON"},
		{"events of the wrong type", `{"events": {"a": 1}}`, 400, "M_NOT_JSON"},
		{"oversize body", big, 413, "M_TOO_LARGE"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code := f.putTxn(t, fmt.Sprintf("bad%d", i), tt.body)
			if status != tt.wantStatus || code != tt.wantCode {
				t.Errorf("got %d %s, want %d %s", status, code, tt.wantStatus, tt.wantCode)
			}
		})
	}
	if n, err := f.db.QueueLength(context.Background()); err != nil || n != 0 {
		t.Errorf("rejected transactions stored %d items (%v)", n, err)
	}
	// The oversize event was not marked as seen: once it fits, it is accepted.
	f.br.Config.AppService.MaxBodyBytes = 1 << 20
	if status, code := f.putTxn(t, "bad-retry", big); status != 200 {
		t.Fatalf("retry with a larger limit: %d %s", status, code)
	}
	if _, evt := f.next(t); evt.ID != "$big" {
		t.Errorf("queued %s, want $big", evt.ID)
	}
}

func TestInboxTransactionDedup(t *testing.T) {
	f := newInboxFixture(t, 100, 1<<20)
	room := "!room:example.org"
	first := txnBody(t, map[string]any{"events": []any{
		msgEvent("$1", room, "one"),
		msgEvent("$2", room, "two"),
		msgEvent("$3", "!other:example.org", "three"),
		// Not bridged: no room (presence-like) and no event ID.
		map[string]any{"type": "m.presence", "sender": "@alice:example.org", "content": map[string]any{"presence": "online"}},
		map[string]any{"type": "m.room.message", "room_id": room, "content": map[string]any{"body": "no id"}},
	}})
	if status, code := f.putTxn(t, "t1", first); status != 200 {
		t.Fatalf("first transaction: %d %s", status, code)
	}
	got := map[string][]string{}
	for range 3 {
		it, evt := f.next(t)
		if it.Kind != kindMatrix || it.Key != matrixQueueKey(evt.RoomID) {
			t.Errorf("item %s: kind %q key %q", evt.ID, it.Kind, it.Key)
		}
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			t.Fatal(err)
		}
		got[evt.RoomID.String()] = append(got[evt.RoomID.String()], evt.ID.String()+"="+evt.Content.AsMessage().Body)
	}
	if strings.Join(got[room], ",") != "$1=one,$2=two" || strings.Join(got["!other:example.org"], ",") != "$3=three" {
		t.Errorf("handled %v", got)
	}

	tests := []struct {
		name      string
		txnID     string
		events    []any
		wantAdded []string // in the room's order
	}{
		{"same transaction again", "t1", []any{msgEvent("$1", room, "one"), msgEvent("$2", room, "two")}, nil},
		{"new transaction ID, same events", "t2", []any{msgEvent("$2", room, "two")}, nil},
		{"retry carrying one old and one new event", "t3", []any{msgEvent("$1", room, "one"), msgEvent("$4", room, "four")}, []string{"$4"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if status, code := f.putTxn(t, tt.txnID, txnBody(t, map[string]any{"events": tt.events})); status != 200 {
				t.Fatalf("%d %s, want 200", status, code)
			}
			// A sentinel in the same room: the lane is ordered and a transaction's items
			// are pushed before its 200, so anything re-queued would come before it.
			sentinel := fmt.Sprintf("$sentinel%d", i)
			if status, code := f.putTxn(t, fmt.Sprintf("sentinel%d", i), txnBody(t, map[string]any{"events": []any{msgEvent(sentinel, room, "s")}})); status != 200 {
				t.Fatalf("sentinel: %d %s", status, code)
			}
			var handled []string
			for {
				_, evt := f.next(t)
				if evt.ID.String() == sentinel {
					break
				}
				handled = append(handled, evt.ID.String())
			}
			if strings.Join(handled, ",") != strings.Join(tt.wantAdded, ",") {
				t.Errorf("handled before the sentinel: %v, want %v", handled, tt.wantAdded)
			}
		})
	}
	f.br.queue.Stop()
	if n, err := f.db.QueueLength(context.Background()); err != nil || n != 0 {
		t.Errorf("%d items left in the queue (%v)", n, err)
	}
}

func TestInboxEphemeral(t *testing.T) {
	tests := []struct {
		name string
		key  string
	}{
		{"stable key", "ephemeral"},
		{"MSC2409 key", "de.sorunome.msc2409.ephemeral"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newInboxFixture(t, 100, 1<<20)
			room := "!room:example.org"
			body := txnBody(t, map[string]any{
				"events": []any{msgEvent("$m", room, "hi")},
				tt.key: []any{
					typingEvent(room, "@alice:example.org"),
					map[string]any{"type": "m.receipt", "room_id": room, "content": map[string]any{"$m": map[string]any{"m.read": map[string]any{"@alice:example.org": map[string]any{"ts": 1}}}}},
					// Presence has no room: not bridged.
					map[string]any{"type": "m.presence", "sender": "@alice:example.org", "content": map[string]any{"presence": "online"}},
				},
			})
			if status, code := f.putTxn(t, "e1", body); status != 200 {
				t.Fatalf("%d %s", status, code)
			}
			wantTypes := []string{"m.room.message", "m.typing", "m.receipt"}
			wantKinds := []string{kindMatrix, kindEphemeral, kindEphemeral}
			for i := range wantTypes {
				it, evt := f.next(t)
				if evt.Type.Type != wantTypes[i] || it.Kind != wantKinds[i] || it.Key != matrixQueueKey(id.RoomID(room)) {
					t.Errorf("item %d: type %s kind %s key %s, want %s %s %s", i, evt.Type.Type, it.Kind, it.Key, wantTypes[i], wantKinds[i], matrixQueueKey(id.RoomID(room)))
				}
			}
			// A retry of the same transaction does not queue its EDUs again; a new
			// transaction with an identical EDU does (EDUs have no IDs).
			if status, code := f.putTxn(t, "e1", body); status != 200 {
				t.Fatalf("retry: %d %s", status, code)
			}
			next := txnBody(t, map[string]any{tt.key: []any{typingEvent(room)}})
			if status, code := f.putTxn(t, "e2", next); status != 200 {
				t.Fatalf("second transaction: %d %s", status, code)
			}
			it, evt := f.next(t)
			if evt.Type.Type != "m.typing" || it.Kind != kindEphemeral {
				t.Errorf("after retry, next handled = %s (%s), want the second transaction's m.typing", evt.Type.Type, it.Kind)
			} else if err := evt.Content.ParseRaw(evt.Type); err != nil {
				t.Fatal(err)
			} else if users := evt.Content.AsTyping().UserIDs; len(users) != 0 {
				t.Errorf("second typing event has users %v, want none (the retried one was re-queued?)", users)
			}
		})
	}
}

// TestInboxQueueFull: Matrix events beyond bridge.max_queue are refused with 503 (the
// homeserver retries them), while network events, however many wait, do not count
// against Matrix's budget.
func TestInboxQueueFull(t *testing.T) {
	const maxQueue = 2
	f := newInboxFixture(t, maxQueue, 1<<20)
	ctx := context.Background()
	// A network flood, held: more items than Matrix's whole budget.
	f.hold = make(chan struct{})
	for i := range maxQueue + 3 {
		it, err := f.db.Enqueue(ctx, "remote:irc|#x", kindRemote, []byte(fmt.Sprintf(`{"n":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		f.br.queue.Push(it)
	}
	flowing := txnBody(t, map[string]any{"events": []any{msgEvent("$flowing", "!r:example.org", "x")}})
	if status, code := f.putTxn(t, "flowing", flowing); status != 200 {
		t.Fatalf("PUT while a network floods: %d %s, want 200", status, code)
	}
	if _, evt := f.next(t); evt.ID != "$flowing" {
		t.Fatalf("handled %s, want $flowing", evt.ID)
	}
	// Matrix's own budget full: held Matrix items.
	f.holdKind.Store(kindMatrix)
	for i := range maxQueue {
		it, err := f.db.Enqueue(ctx, "matrix:!held:example.org", kindMatrix, []byte(fmt.Sprintf(`{"n":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		f.br.queue.Push(it)
	}
	// $flowing leaves the table a moment after it was handled.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if n, err := f.db.QueueLength(ctx); err != nil || n == 2*maxQueue+3 || time.Now().After(deadline) {
			break
		}
	}
	body := txnBody(t, map[string]any{"events": []any{msgEvent("$full", "!r:example.org", "x")}})
	status, code := f.putTxn(t, "full", body)
	if status != http.StatusServiceUnavailable || code != "M_LIMIT_EXCEEDED" {
		t.Errorf("PUT with a full queue: %d %s, want 503 M_LIMIT_EXCEEDED", status, code)
	}
	if n, err := f.db.QueueLength(ctx); err != nil || n != 2*maxQueue+3 {
		t.Errorf("queue length after refusal = %d (%v), want %d", n, err, 2*maxQueue+3)
	}
	// Below the limit again, the homeserver's retry is accepted: the refused events were
	// not recorded as seen.
	f.holdKind.Store("")
	close(f.hold)
	for f.br.queue.LenKind(kindMatrix) >= maxQueue {
		time.Sleep(time.Millisecond)
	}
	if status, code = f.putTxn(t, "full", body); status != 200 {
		t.Fatalf("retry below the limit: %d %s", status, code)
	}
	for {
		if _, evt := f.next(t); evt.ID == "$full" {
			break
		}
	}
}

// TestInboxRoomOverflow: a Matrix room whose events wait past max_queue_per_chat has
// what its members say dropped and counted (its state and redactions still stored,
// other rooms untouched, the transaction answered 200, nothing refused with 503), and
// is told how many once it caught up; then its events are taken again.
func TestInboxRoomOverflow(t *testing.T) {
	f := newInboxFixture(t, 100, 1<<20)
	f.br.Config.Bridge.MaxQueuePerChat = 3
	f.holdKind.Store(kindMatrix)
	f.hold = make(chan struct{})
	const busy, calm = "!busy:example.org", "!calm:example.org"
	var events []any
	for i := range 5 {
		events = append(events, msgEvent(fmt.Sprintf("$b%d", i), busy, "busy"))
	}
	topic := map[string]any{"type": "m.room.topic", "state_key": "", "event_id": "$topic", "room_id": busy,
		"sender": "@alice:example.org", "origin_server_ts": 1700000000000, "content": map[string]any{"topic": "t"}}
	redaction := map[string]any{"type": "m.room.redaction", "event_id": "$redact", "room_id": busy, "redacts": "$b0",
		"sender": "@alice:example.org", "origin_server_ts": 1700000000000, "content": map[string]any{"redacts": "$b0"}}
	events = append(events, topic, redaction, msgEvent("$c0", calm, "calm"), msgEvent("$c1", calm, "calm"))
	if status, code := f.putTxn(t, "busy-1", txnBody(t, map[string]any{"events": events,
		"ephemeral": []any{typingEvent(busy, "@alice:example.org")}})); status != 200 {
		t.Fatalf("PUT past a room's budget: %d %s, want 200", status, code)
	}
	// Three of the busy room's messages, its topic and redaction; both calm ones.
	if n := f.br.queue.LaneLen(matrixQueueKey(busy)); n != 5 {
		t.Errorf("the busy room holds %d events, want 5 (3 messages, the topic, the redaction)", n)
	}
	if n := f.br.queue.LaneLen(matrixQueueKey(calm)); n != 2 {
		t.Errorf("the calm room holds %d events, want 2", n)
	}
	if status, _ := f.putTxn(t, "busy-2", txnBody(t, map[string]any{"events": []any{msgEvent("$b5", busy, "still busy")}})); status != 200 {
		t.Fatalf("PUT while a room drops: %d", status)
	}
	close(f.hold)
	var notice string
	select {
	case notice = <-f.notices:
	case <-time.After(30 * time.Second): // a bound on a broken bridge, not an assertion
		t.Fatal("the busy room was never told of its dropped messages")
	}
	// Dropped: $b3, $b4, the typing notice and $b5.
	if !strings.HasPrefix(notice, busy+" 4 messages sent here") {
		t.Errorf("notice %q, want the busy room told of 4", notice)
	}
	f.holdKind.Store("")
	if status, _ := f.putTxn(t, "busy-3", txnBody(t, map[string]any{"events": []any{msgEvent("$b6", busy, "calm again")}})); status != 200 {
		t.Fatalf("PUT after the room caught up: %d", status)
	}
	if _, evt := f.next(t); evt.ID != "$b6" {
		t.Errorf("handled %s after the room caught up, want $b6", evt.ID)
	}
}

func TestInboxMiscEndpoints(t *testing.T) {
	f := newInboxFixture(t, 100, 1<<20)
	tests := []struct {
		name, method, path string
		token              string
		before             func()
		wantStatus         int
		wantCode           string
	}{
		{"live", http.MethodGet, "/_passerelle/live", "", nil, 200, ""},
		{"not ready yet", http.MethodGet, "/_passerelle/ready", "", nil, 503, ""},
		{"ready", http.MethodGet, "/_passerelle/ready", "", func() { close(f.br.ready) }, 200, ""},
		{"unknown path", http.MethodGet, "/_matrix/app/v1/nothing", testHSToken, nil, 404, "M_UNRECOGNIZED"},
		{"wrong method on transactions", http.MethodGet, "/_matrix/app/v1/transactions/x", testHSToken, nil, 404, "M_UNRECOGNIZED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			status, code := f.do(t, tt.method, tt.path, tt.token, "")
			if status != tt.wantStatus || code != tt.wantCode {
				t.Errorf("got %d %q, want %d %q", status, code, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

// TestInboxSkipsOwnEchoes: the bot's own messages (and those a double puppet marked as
// the bridge's) come back in transactions; they are not stored, while a user's message
// and the bot's own state events (memberships the state store follows) are.
func TestInboxSkipsOwnEchoes(t *testing.T) {
	f := newInboxFixture(t, 100, 1<<20)
	bot := f.br.BotMXID().String()
	own := msgEvent("$own", "!r:example.org", "from the bot")
	own["sender"] = bot
	puppet := msgEvent("$puppet", "!r:example.org", "from a double puppet")
	puppet["content"].(map[string]any)["fi.mau.double_puppet_source"] = "passerelle:test"
	join := map[string]any{"type": "m.room.member", "event_id": "$join", "room_id": "!r:example.org", "sender": bot,
		"state_key": bot, "origin_server_ts": 1700000000000, "content": map[string]any{"membership": "join"}}
	user := msgEvent("$user", "!r:example.org", "from a user")
	body := txnBody(t, map[string]any{"events": []any{own, puppet, join, user}})
	if status, code := f.putTxn(t, "echoes", body); status != 200 {
		t.Fatalf("PUT: %d %s", status, code)
	}
	for _, want := range []id.EventID{"$join", "$user"} {
		if _, evt := f.next(t); evt.ID != want {
			t.Fatalf("queued %s, want %s", evt.ID, want)
		}
	}
	if n, err := f.db.QueueLength(context.Background()); err != nil || n != 0 {
		t.Fatalf("stored items left: %d (%v); the echoes were stored", n, err)
	}
}

// TestInboxSkipsMalformedEvent: one event the homeserver relayed with a wrongly typed
// field must not make the whole transaction fail — the homeserver would retry it forever
// and every event behind it would wait. The bad event is skipped, the rest is stored.
func TestInboxSkipsMalformedEvent(t *testing.T) {
	f := newInboxFixture(t, 100, 1<<20)
	before := msgEvent("$before", "!r:example.org", "first")
	badSender := msgEvent("$bad-sender", "!r:example.org", "sender is a number")
	badSender["sender"] = 42
	badTS := msgEvent("$bad-ts", "!r:example.org", "timestamp is a string")
	badTS["origin_server_ts"] = "yesterday"
	badContent := msgEvent("$bad-content", "!r:example.org", "")
	badContent["content"] = "not an object"
	after := msgEvent("$after", "!r:example.org", "last")
	badTyping := map[string]any{"type": "m.typing", "room_id": 7, "content": map[string]any{}}
	body := txnBody(t, map[string]any{
		"events":                        []any{before, badSender, badTS, "not an event", badContent, after},
		"ephemeral":                     []any{badTyping, typingEvent("!r:example.org", "@alice:example.org")},
		"de.sorunome.msc2409.ephemeral": []any{},
	})
	if status, code := f.putTxn(t, "one-bad", body); status != 200 {
		t.Fatalf("PUT with malformed events among good ones: %d %s, want 200", status, code)
	}
	var got []string
	for range 3 {
		_, evt := f.next(t)
		got = append(got, evt.Type.Type+" "+evt.ID.String())
	}
	want := []string{"m.room.message $before", "m.room.message $after", "m.typing "}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("handled %q, want %q", got, want)
	}
	if n, err := f.db.QueueLength(context.Background()); err != nil || n != 0 {
		t.Errorf("stored items left: %d (%v)", n, err)
	}
	// The good events were marked seen: a retry of the same transaction adds nothing.
	if status, _ := f.putTxn(t, "one-bad-again", body); status != 200 {
		t.Fatalf("retry: %d", status)
	}
	select {
	case it := <-f.handled:
		if it.Kind != kindEphemeral {
			t.Errorf("a retried transaction's event was handled again: %s", it.Payload)
		}
	case <-time.After(300 * time.Millisecond): // nothing more is expected; a bound, not a timing assertion
	}
}

// FuzzDecodeTransaction: whatever the body, decoding never panics, and every item it
// yields is an event of the room its ordering key names.
func FuzzDecodeTransaction(f *testing.F) {
	good := map[string]any{"events": []any{msgEvent("$a", "!r:example.org", "x")},
		"ephemeral": []any{typingEvent("!r:example.org", "@a:example.org")}}
	data, _ := json.Marshal(good)
	for _, s := range []string{string(data), `{}`, `{"events":null}`, `{"events":[1,"a",null,{}]}`,
		`{"events":[{"event_id":"$x","room_id":"!r:x","type":5}]}`, `{"events":[{"event_id":"$x","room_id":"!r:x","content":"\xff"}]}`,
		`{"de.sorunome.msc2409.ephemeral":[{"type":"m.receipt","room_id":"!r:x","content":{}}]}`, `[`, `"x"`} {
		f.Add([]byte(s))
	}
	br := &Bridge{Config: testConfig(), Log: zerolog.Nop()}
	loops, err := NewLoopGuard(br.Config, "passerelle:test")
	if err != nil {
		f.Fatal(err)
	}
	br.loops = loops
	br.AS = appservice.Create()
	br.AS.Registration = &appservice.Registration{SenderLocalpart: "passerelle"}
	br.AS.HomeserverDomain = "example.org"
	f.Fuzz(func(t *testing.T, body []byte) {
		txn, err := br.decodeTransaction(zerolog.Nop(), "fuzz", body)
		if err != nil {
			return
		}
		if len(txn.rooms) != len(txn.items) || len(txn.droppable) != len(txn.items) {
			t.Fatalf("%d items, %d rooms, %d droppable flags", len(txn.items), len(txn.rooms), len(txn.droppable))
		}
		for i, it := range txn.items {
			if it.Key != matrixQueueKey(txn.rooms[i]) {
				t.Fatalf("item key %q for room %q", it.Key, txn.rooms[i])
			}
			var evt event.Event
			if err := json.Unmarshal(it.Payload, &evt); err != nil {
				t.Fatalf("stored payload does not decode: %v (%q)", err, it.Payload)
			}
			if evt.RoomID == "" || it.Key != matrixQueueKey(evt.RoomID) {
				t.Fatalf("item key %q for an event of room %q", it.Key, evt.RoomID)
			}
			if !utf8.Valid(it.Payload) {
				t.Fatalf("stored payload is not UTF-8: %q", it.Payload)
			}
		}
	})
}
