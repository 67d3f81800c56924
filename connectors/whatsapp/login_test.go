package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/passerelle/passerelle/bridge"
)

// fakeClient stands in for *whatsmeow.Client: the test feeds its QR channel with
// whatsmeow.QRChannelItem values and dispatches whatsmeow events to its handlers.
type fakeClient struct {
	// Client is nil: the login flows must not call anything else, and a call panics.
	Client
	mu             sync.Mutex
	calls          []string
	qr             chan whatsmeow.QRChannelItem
	connected      bool
	handlers       map[uint32]func(any) bool
	nextHandler    uint32
	jid            *types.JID
	pairCode       string
	pairErr        error
	pairedPhone    string
	onConnect      func(f *fakeClient)
	disconnectSeen int
}

var _ Client = (*fakeClient)(nil)

func newFakeClient(items ...whatsmeow.QRChannelItem) *fakeClient {
	f := &fakeClient{qr: make(chan whatsmeow.QRChannelItem, len(items)+1), handlers: map[uint32]func(any) bool{}}
	for _, it := range items {
		f.qr <- it
	}
	return f
}

func (f *fakeClient) record(call string) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
}

func (f *fakeClient) Connect() error {
	f.record("Connect")
	f.mu.Lock()
	f.connected = true
	hook := f.onConnect
	f.mu.Unlock()
	if hook != nil {
		hook(f)
	}
	return nil
}

func (f *fakeClient) Disconnect() {
	f.record("Disconnect")
	f.mu.Lock()
	f.connected = false
	f.disconnectSeen++
	f.mu.Unlock()
}

func (f *fakeClient) IsConnected() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.connected }
func (f *fakeClient) IsLoggedIn() bool  { f.mu.Lock(); defer f.mu.Unlock(); return f.jid != nil }

func (f *fakeClient) GetQRChannel(context.Context) (<-chan whatsmeow.QRChannelItem, error) {
	f.record("GetQRChannel")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.connected {
		return nil, whatsmeow.ErrQRAlreadyConnected
	}
	return f.qr, nil
}

func (f *fakeClient) PairPhone(_ context.Context, phone string, _ bool, _ whatsmeow.PairClientType, display string) (string, error) {
	f.record("PairPhone")
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.connected {
		return "", whatsmeow.ErrNotConnected
	}
	if display != pairClientDisplayName {
		return "", errors.New("bad display name")
	}
	f.pairedPhone = phone
	return f.pairCode, f.pairErr
}

func (f *fakeClient) Logout(context.Context) error { f.record("Logout"); return nil }

func (f *fakeClient) AddEventHandler(h func(any) bool) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextHandler++
	f.handlers[f.nextHandler] = h
	return f.nextHandler
}

func (f *fakeClient) RemoveEventHandler(id uint32) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.handlers[id]
	delete(f.handlers, id)
	return ok
}

func (f *fakeClient) DeviceJID() *types.JID { f.mu.Lock(); defer f.mu.Unlock(); return f.jid }

// dispatch delivers an event the way whatsmeow does: to every registered handler.
func (f *fakeClient) dispatch(evt any) {
	f.mu.Lock()
	hs := make([]func(any) bool, 0, len(f.handlers))
	for _, h := range f.handlers {
		hs = append(hs, h)
	}
	f.mu.Unlock()
	for _, h := range hs {
		h(evt)
	}
}

func (f *fakeClient) callList() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

var testJID = types.NewADJID("33612345678", 0, 12)

func code(c string) whatsmeow.QRChannelItem {
	return whatsmeow.QRChannelItem{Event: whatsmeow.QRChannelEventCode, Code: c, Timeout: 60 * time.Second}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestQRLogin(t *testing.T) {
	cases := []struct {
		name      string
		items     []whatsmeow.QRChannelItem
		closeChan bool
		wantCodes []string
		wantDone  bool
		wantErr   string
	}{
		{
			name:      "codes then success",
			items:     []whatsmeow.QRChannelItem{code("2@first"), code("2@second"), whatsmeow.QRChannelSuccess},
			wantCodes: []string{"2@first", "2@second"},
			wantDone:  true,
		},
		{
			name:      "timeout",
			items:     []whatsmeow.QRChannelItem{code("2@first"), whatsmeow.QRChannelTimeout},
			wantCodes: []string{"2@first"},
			wantErr:   msgQRExpired,
		},
		{
			name:    "client outdated",
			items:   []whatsmeow.QRChannelItem{whatsmeow.QRChannelClientOutdated},
			wantErr: msgClientOutdated,
		},
		{
			name:      "scanned without multidevice",
			items:     []whatsmeow.QRChannelItem{code("2@first"), whatsmeow.QRChannelScannedWithoutMultidevice},
			wantCodes: []string{"2@first"},
			wantErr:   "without multi-device support",
		},
		{
			name:      "pair error",
			items:     []whatsmeow.QRChannelItem{code("2@first"), {Event: whatsmeow.QRChannelEventError, Error: errors.New("bad hmac")}},
			wantCodes: []string{"2@first"},
			wantErr:   "pairing with WhatsApp failed: bad hmac",
		},
		{
			name:    "unexpected state",
			items:   []whatsmeow.QRChannelItem{whatsmeow.QRChannelErrUnexpectedEvent},
			wantErr: "ended unexpectedly (err-unexpected-state)",
		},
		{
			name:      "channel closed",
			items:     []whatsmeow.QRChannelItem{code("2@first")},
			closeChan: true,
			wantCodes: []string{"2@first"},
			wantErr:   msgLoginCancelled,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			f := newFakeClient(tc.items...)
			if tc.closeChan {
				close(f.qr)
			}
			jid := testJID
			f.jid = &jid // whatsmeow sets Store.ID before emitting success
			l := newQRLogin(f)

			var codes []string
			step, err := l.Start(ctx)
			for err == nil && step.Type == bridge.StepDisplay {
				if step.Display != bridge.DisplayQR {
					t.Fatalf("display kind = %q, want qr", step.Display)
				}
				codes = append(codes, step.Data)
				step, err = l.Wait(ctx)
			}
			l.Cancel()

			if strings.Join(codes, " ") != strings.Join(tc.wantCodes, " ") {
				t.Errorf("codes = %q, want %q", codes, tc.wantCodes)
			}
			if !strings.HasPrefix(f.callList(), "GetQRChannel,Connect") {
				t.Errorf("calls = %s; the QR channel must be requested before connecting", f.callList())
			}
			if tc.wantDone {
				if err != nil {
					t.Fatalf("login failed: %v", err)
				}
				if step.Type != bridge.StepDone || step.Login == nil {
					t.Fatalf("last step = %+v, want done", step)
				}
				checkLogin(t, step.Login)
				// The connected client is handed over to the session, not disconnected.
				if f.disconnectSeen != 0 {
					t.Errorf("Disconnect called %d times after a successful login, want 0", f.disconnectSeen)
				}
				return
			}
			if f.disconnectSeen != 1 {
				t.Errorf("Disconnect called %d times, want 1", f.disconnectSeen)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestQRLoginStartNeedsChannel checks a failing GetQRChannel ends the login before any
// connection is made.
func TestQRLoginStartNeedsChannel(t *testing.T) {
	f := newFakeClient()
	f.connected = true
	if _, err := newQRLogin(f).Start(testCtx(t)); !errors.Is(err, whatsmeow.ErrQRAlreadyConnected) {
		t.Fatalf("Start error = %v", err)
	}
	if strings.Contains(f.callList(), "Connect") {
		t.Fatalf("connected after the QR channel failed: %s", f.callList())
	}
}

// newPairFake is a client that, like whatsmeow, emits a QR event once connected.
func newPairFake() *fakeClient {
	f := newFakeClient()
	f.pairCode = "ABCD-EFGH"
	f.onConnect = func(f *fakeClient) { f.dispatch(&events.QR{Codes: []string{"2@unused"}}) }
	return f
}

func startPair(t *testing.T, f *fakeClient, expired chan time.Time) (*pairLogin, *bridge.LoginStep) {
	t.Helper()
	l := newPairLogin(f, "+33 6 12 34 56 78")
	l.expiry = func(d time.Duration) <-chan time.Time {
		if d != pairCodeLifetime {
			t.Errorf("expiry = %s", d)
		}
		return expired
	}
	t.Cleanup(l.Cancel)
	step, err := l.Start(testCtx(t))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if step.Type != bridge.StepDisplay || step.Display != bridge.DisplayCode || step.Data != "ABCD-EFGH" {
		t.Fatalf("first step = %+v", step)
	}
	if !strings.Contains(step.Instructions, "expires in a few minutes") {
		t.Errorf("instructions do not mention expiry: %q", step.Instructions)
	}
	if f.pairedPhone != "33612345678" {
		t.Errorf("PairPhone phone = %q", f.pairedPhone)
	}
	if got := f.callList(); got != "Connect,PairPhone" {
		t.Errorf("calls = %s, want Connect,PairPhone", got)
	}
	return l, step
}

func TestPairLogin(t *testing.T) {
	cases := []struct {
		name     string
		event    any  // dispatched to the client's handlers after the code is shown
		expire   bool // the code-expiry timer fires instead
		wantDone bool // else wantErr
		wantErr  string
	}{
		{name: "success", event: &events.PairSuccess{ID: testJID, Platform: "android"}, wantDone: true},
		{name: "expired", expire: true, wantErr: msgPairCodeExpired},
		{name: "websocket closed", event: &events.Disconnected{}, wantErr: msgPairCodeExpired},
		{name: "client outdated", event: &events.ClientOutdated{}, wantErr: msgClientOutdated},
		{name: "pair error", event: &events.PairError{ID: testJID, Error: errors.New("bad signature")}, wantErr: "pairing with WhatsApp failed: bad signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newPairFake()
			expired := make(chan time.Time)
			l, _ := startPair(t, f, expired)
			if tc.expire {
				close(expired)
			} else {
				if tc.wantDone {
					jid := testJID
					f.mu.Lock()
					f.jid = &jid
					f.mu.Unlock()
				}
				f.dispatch(tc.event)
			}
			step, err := l.Wait(testCtx(t))
			if tc.wantDone {
				if err != nil {
					t.Fatalf("Wait: %v", err)
				}
				if step.Type != bridge.StepDone || step.Login == nil {
					t.Fatalf("step = %+v", step)
				}
				checkLogin(t, step.Login)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Wait error = %v, want %q", err, tc.wantErr)
			}
			if f.disconnectSeen != 1 {
				t.Errorf("Disconnect called %d times, want 1", f.disconnectSeen)
			}
			if len(f.handlers) != 0 {
				t.Errorf("%d event handlers left registered", len(f.handlers))
			}
		})
	}
}

func TestPairLoginCancel(t *testing.T) {
	f := newPairFake()
	l, _ := startPair(t, f, make(chan time.Time))
	l.Cancel()
	l.Cancel() // idempotent
	if _, err := l.Wait(testCtx(t)); err == nil || !strings.Contains(err.Error(), msgLoginCancelled) {
		t.Fatalf("Wait after Cancel = %v", err)
	}
	if f.disconnectSeen != 1 || len(f.handlers) != 0 {
		t.Fatalf("after Cancel: %d disconnects, %d handlers", f.disconnectSeen, len(f.handlers))
	}
}

func TestPairLoginBadPhone(t *testing.T) {
	for _, phone := range []string{"", "12345", "0612345678", "hello"} {
		f := newPairFake()
		_, err := newPairLogin(f, phone).Start(testCtx(t))
		if err == nil || !strings.Contains(err.Error(), "international form") {
			t.Fatalf("Start(%q) error = %v", phone, err)
		}
		if f.callList() != "" {
			t.Errorf("Start(%q) touched the client: %s", phone, f.callList())
		}
	}
}

func TestPairLoginOutdatedBeforeCode(t *testing.T) {
	f := newFakeClient()
	f.onConnect = func(f *fakeClient) { f.dispatch(&events.ClientOutdated{}) }
	_, err := newPairLogin(f, "+33612345678").Start(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), msgClientOutdated) {
		t.Fatalf("Start error = %v", err)
	}
	if strings.Contains(f.callList(), "PairPhone") {
		t.Fatalf("asked for a code on an outdated client: %s", f.callList())
	}
}

// checkLogin checks a finished login: keyed on the account (so linking it again
// replaces the old link), with the device to load in its metadata.
func checkLogin(t *testing.T, l *bridge.NewLogin) {
	t.Helper()
	var meta loginMetadata
	if err := json.Unmarshal(l.Metadata, &meta); err != nil {
		t.Fatalf("login metadata: %v", err)
	}
	if string(l.ID) != testJID.ToNonAD().String() || l.RemoteName != "+33612345678" || meta.DeviceJID != testJID.String() {
		t.Errorf("login = %+v, metadata %+v", l, meta)
	}
}
