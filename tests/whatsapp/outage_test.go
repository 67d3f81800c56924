package whatsapp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/whatsapp/fakewa"
)

// TestPostgresOutage: PostgreSQL goes away for a few seconds while messages stream both
// ways between WhatsApp and Matrix. WhatsApp's deliveries wait to be acknowledged until
// they are stored, Matrix's transactions are retried by the homeserver; every message
// arrives once (on WhatsApp: each message ID once), in order, and nobody is told one
// was not bridged.
func TestPostgresOutage(t *testing.T) {
	v := newVariant(t, "waoutage", "postgres", 0)
	conn := v.testQRLogin(t)
	ctx := v.ctx()
	contact := userJID(v.prefix() + "0000088")
	in := func(i int) any {
		return message(contact, contact, fmt.Sprintf("OUTAGE%03d", i), "Outage", text(fmt.Sprintf("in %03d", i)))
	}
	v.dispatch(conn, in(0))
	room, _, err := v.alice.WaitAnyEvent(ctx, func(_ id.RoomID, e *event.Event) bool {
		return e.Type == event.EventMessage && e.Content.AsMessage().Body == "in 000"
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.JoinAndWait(ctx, room.String()); err != nil {
		t.Fatal(err)
	}
	cursor := v.wa.CallCount()
	next := 1
	stream := func(n int, async bool) chan error {
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
		for i := first; i < first+n; i++ {
			if _, err := v.alice.SendText(ctx, room, fmt.Sprintf("out %03d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if !async {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		return done
	}
	stream(10, false)
	v.pgProxy.Cut()
	during := stream(10, true)  // acknowledged only once the database is back
	time.Sleep(3 * time.Second) // the outage's length, not a wait for a result
	v.pgProxy.Release()
	healed := time.Now()
	if err = <-during; err != nil {
		t.Fatal(err)
	}
	stream(10, false)
	last := next - 1

	// A send the outage cut off after WhatsApp took it is sent again with the same
	// message ID (derived from the Matrix event), which WhatsApp takes as the same
	// message: what counts is each ID once, in order.
	var out []string
	ids := map[string]string{}
	resent := 0
	for len(out) < last {
		call, idx, err := v.wa.WaitCall(ctx, cursor, sendTo(contact))
		if err != nil {
			t.Fatalf("after %d of %d messages reached WhatsApp: %v", len(out), last, err)
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
	t.Logf("%d sends repeated with their message ID after the outage", resent)
	v.waitIn(room, "last message in", func(e *event.Event) bool {
		return e.Type == event.EventMessage && e.Content.AsMessage().Body == fmt.Sprintf("in %03d", last)
	})
	t.Logf("recovered: every message delivered %s after the database came back", time.Since(healed).Round(time.Millisecond))
	// A duplicate would follow the last message: an end marker sent after it must
	// arrive after everything else.
	v.dispatch(conn, message(contact, contact, "OUTAGEEND", "Outage", text("end marker")))
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
	var wantIn, wantOut []string
	for i := 0; i <= last; i++ {
		wantIn = append(wantIn, fmt.Sprintf("in %03d", i))
		if i > 0 {
			wantOut = append(wantOut, fmt.Sprintf("out %03d", i))
		}
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

// sentText is the text of a message the bridge sent to WhatsApp.
func sentText(call *fakewa.Call) string {
	if body := call.Message.GetConversation(); body != "" {
		return body
	}
	return call.Message.GetExtendedTextMessage().GetText()
}
