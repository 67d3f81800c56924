package whatsapp

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/whatsapp/fakewa"
	"github.com/passerelle/passerelle/tests/harness"
)

// TestPostgresOutage: PostgreSQL goes away for a few seconds while messages stream both
// ways between WhatsApp and Matrix. WhatsApp's deliveries wait to be acknowledged until
// they are stored, Matrix's transactions are retried by the homeserver; every message
// arrives once (on WhatsApp: each message ID once), in order, and nobody is told one
// was not bridged.
func TestPostgresOutage(t *testing.T) {
	v := newVariant(t, "waoutage", "postgres", 0)
	streamThroughFault(t, v, "OUTAGE", waFault{matrixDuring: true, begin: func() func() {
		v.pgProxy.Cut()
		return func() {
			time.Sleep(3 * time.Second) // the outage's length, not a wait for a result
			v.pgProxy.Release()
		}
	}})
}

// TestPostgresOutageOutlastsRetryWindow: the database stays away for four times the
// retry window while WhatsApp and Matrix keep sending; failures meanwhile are not the
// events' fault, so none is given up and nobody is told one was not bridged.
func TestPostgresOutageOutlastsRetryWindow(t *testing.T) {
	const retryWindow = time.Second
	v := newVariantWith(t, "walongoutage", "postgres", 0, variantOptions{bridgeExtra: map[string]any{"retry_window": retryWindow.String()}})
	streamThroughFault(t, v, "LONGOUTAGE", waFault{matrixDuring: true, begin: func() func() {
		v.pgProxy.Cut()
		return func() {
			time.Sleep(4 * retryWindow) // the outage's length, not a wait for a result
			v.pgProxy.Release()
		}
	}})
}

// TestHomeserverRestart: Dendrite is killed while WhatsApp messages keep coming, and
// started again. They are stored and acknowledged meanwhile and reach Matrix once the
// homeserver is back, each once (Dendrite forgets the transaction IDs of sends it had
// taken before it died), in order; the Matrix user sends again once it is back.
func TestHomeserverRestart(t *testing.T) {
	v := newVariant(t, "wahsrestart", "sqlite", 0)
	streamThroughFault(t, v, "HSRESTART", waFault{begin: func() func() {
		done := make(chan error, 1)
		go func() { done <- shared.hs.Restart(v.ctx(), 6*time.Second) }()
		return func() {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}})
}

// faultRSSBound is the bound the fault tests state for the bridge's peak resident memory.
const faultRSSBound = 200 << 20

// waFault is one fault for streamThroughFault: begin causes it and returns what ends
// it (waiting as long as it lasts); matrixDuring says the Matrix user can still send
// while it lasts (not when it is their homeserver that is down).
type waFault struct {
	begin        func() (end func())
	matrixDuring bool
}

// streamThroughFault logs a WhatsApp account in and streams messages both ways between
// a contact and its Matrix room before, during and after a fault, then checks that
// every message arrived once (on WhatsApp: each message ID once) and in order, that
// nobody was told one was not bridged, and that the bridge's peak memory stayed under
// faultRSSBound. tag prefixes the WhatsApp message IDs.
func streamThroughFault(t *testing.T, v *variant, tag string, fault waFault) {
	t.Helper()
	conn := v.testQRLogin(t)
	ctx := v.ctx()
	contact := userJID(v.prefix() + "0000088")
	in := func(i int) any {
		return message(contact, contact, fmt.Sprintf("%s%03d", tag, i), "Outage", text(fmt.Sprintf("in %03d", i)))
	}
	room := v.openChat(conn, in(0), "in 000")
	cursor := v.wa.CallCount()
	var err error
	next := 1
	var wantOut []string
	stream := func(n int, matrix, async bool) chan error {
		done := make(chan error, 1)
		first := next
		next += n
		go func() {
			for i := first; i < first+n; i++ {
				if err := conn.Dispatch(ctx, in(i)); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		for i := first; matrix && i < first+n; i++ {
			body := fmt.Sprintf("out %03d", i)
			if _, err := v.alice.SendText(ctx, room, body); err != nil {
				t.Fatal(err)
			}
			wantOut = append(wantOut, body)
		}
		if !async {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		return done
	}
	stream(10, true, false)
	end := fault.begin()
	during := stream(10, fault.matrixDuring, true) // acknowledged once stored
	end()
	healed := time.Now()
	if err = <-during; err != nil {
		t.Fatal(err)
	}
	stream(10, true, false)
	last := next - 1

	// A send the fault cut off after WhatsApp took it is sent again with the same
	// message ID (derived from the Matrix event), which WhatsApp takes as the same
	// message: what counts is each ID once, in order.
	var out []string
	ids := map[string]string{}
	resent := 0
	for len(out) < len(wantOut) {
		call, idx, err := v.wa.WaitCall(ctx, cursor, sendTo(contact))
		if err != nil {
			t.Fatalf("after %d of %d messages reached WhatsApp: %v", len(out), len(wantOut), err)
		}
		cursor = idx + 1
		if prev, seen := ids[call.ID]; seen {
			if prev != sentText(call) {
				t.Fatalf("message ID %s sent as %q and as %q", call.ID, prev, sentText(call))
			}
			resent++
			continue
		}
		ids[call.ID] = sentText(call)
		out = append(out, sentText(call))
	}
	t.Logf("%d sends repeated with their message ID after the fault", resent)
	v.waitIn(room, "last message in", func(e *event.Event) bool {
		return e.Type == event.EventMessage && e.Content.AsMessage().Body == fmt.Sprintf("in %03d", last)
	})
	t.Logf("recovered: every message delivered %s after the fault ended", time.Since(healed).Round(time.Millisecond))
	peak, err := harness.ProcStatusKB(v.bridge.Pid(), "VmHWM:")
	if err != nil {
		t.Fatal(err)
	}
	if peak<<10 > faultRSSBound {
		t.Errorf("bridge peak RSS %d MiB, bound %d MiB", peak>>10, faultRSSBound>>20)
	} else {
		t.Logf("bridge peak RSS: %.1f MiB", float64(peak)/1024)
	}
	// A duplicate would follow the last message: an end marker sent after it must
	// arrive after everything else.
	v.dispatch(conn, message(contact, contact, tag+"END", "Outage", text("end marker")))
	v.waitIn(room, "end marker", func(e *event.Event) bool {
		return e.Type == event.EventMessage && e.Content.AsMessage().Body == "end marker"
	})
	var got []string
	for _, e := range v.alice.Events(room) {
		if e.Type != event.EventMessage {
			continue
		}
		body := e.Content.AsMessage().Body
		if e.Sender == ghost(contact.User) {
			got = append(got, body)
		}
		if strings.Contains(body, "not bridged") {
			t.Errorf("someone was told a message was not bridged: %q", body)
		}
	}
	var wantIn []string
	for i := 0; i <= last; i++ {
		wantIn = append(wantIn, fmt.Sprintf("in %03d", i))
	}
	wantIn = append(wantIn, "end marker")
	if fmt.Sprint(got) != fmt.Sprint(wantIn) {
		t.Errorf("Matrix got %q, want each of %d once, in order", got, len(wantIn))
	}
	if fmt.Sprint(out) != fmt.Sprint(wantOut) {
		t.Errorf("WhatsApp got %q, want each of %d once, in order", out, len(wantOut))
	}
	// Nor to WhatsApp: the next thing sent after the last message is a marker sent
	// after it.
	if _, err = v.alice.SendText(ctx, room, "out end"); err != nil {
		t.Fatal(err)
	}
	for {
		call := v.sent(&cursor, sendTo(contact))
		if sentText(call) == "out end" {
			break
		}
		if _, seen := ids[call.ID]; !seen {
			t.Fatalf("after the last message WhatsApp got %q under a new ID", sentText(call))
		}
	}
}

// openChat has a contact's first message (first, whose text is body) open its room, and
// joins Alice to it.
func (v *variant) openChat(conn *fakewa.Conn, first any, body string) id.RoomID {
	v.t.Helper()
	ctx := v.ctx()
	v.dispatch(conn, first)
	room, _, err := v.alice.WaitAnyEvent(ctx, func(_ id.RoomID, e *event.Event) bool {
		return e.Type == event.EventMessage && e.Content.AsMessage().Body == body
	})
	if err != nil {
		v.t.Fatal(err)
	}
	if _, err = v.alice.JoinAndWait(ctx, room.String()); err != nil {
		v.t.Fatal(err)
	}
	return room
}

// TestStalledFile: the homeserver starts a Matrix file's download and never finishes it
// (an upload that never completes). Past bridge.file_timeout the file is refused with a
// notice; the room's next message still reaches WhatsApp, and nothing is left in the
// spool.
func TestStalledFile(t *testing.T) {
	v := newVariantWith(t, "wastall", "sqlite", 0, variantOptions{hsProxy: true, bridgeExtra: map[string]any{"file_timeout": "2s"}})
	conn := v.testQRLogin(t)
	ctx := v.ctx()
	contact := userJID(v.prefix() + "0000077")
	room := v.openChat(conn, message(contact, contact, "STALL0", "Staller", text("send me the file")), "send me the file")
	cursor := v.wa.CallCount()
	up, err := v.alice.UploadBytesWithName(ctx, []byte("a file that never arrives"), "text/plain", "never.txt")
	if err != nil {
		t.Fatal(err)
	}
	v.hsProxy.Stall(func(r *http.Request) bool {
		return strings.Contains(r.URL.Path, "/download/") && strings.Contains(r.URL.Path, up.ContentURI.FileID)
	})
	if _, err = v.alice.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgFile,
		Body: "never.txt", URL: up.ContentURI.CUString()}); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.SendText(ctx, room, "after the file"); err != nil {
		t.Fatal(err)
	}
	v.waitIn(room, "stalled file notice", noticeFrom(bot(), "not bridged", "could not be fetched"))
	if call := v.sent(&cursor, sendTo(contact)); sentText(call) != "after the file" {
		t.Errorf("after the stalled file WhatsApp got %v, want the next message", call.Message)
	}
	if v.hsProxy.Stalled() == 0 {
		t.Error("the bridge never asked the homeserver for the file")
	}
	v.waitSpoolEmpty()
}

// sentText is the text of a message the bridge sent to WhatsApp.
func sentText(call *fakewa.Call) string {
	if body := call.Message.GetConversation(); body != "" {
		return body
	}
	return call.Message.GetExtendedTextMessage().GetText()
}
