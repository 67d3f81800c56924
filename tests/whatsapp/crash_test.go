package whatsapp

import (
	"fmt"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/whatsapp/fakewa"
)

// TestCrash kills the bridge with SIGKILL while WhatsApp messages stream in. What the
// bridge acknowledged was stored; what it did not, WhatsApp delivers again (the test
// plays that part). Every message must reach Matrix exactly once, in order.
func TestCrash(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			v := newVariant(t, "wacrash", db, 0)
			conn := v.testQRLogin(t)
			ctx := v.ctx()
			contact := userJID(v.prefix() + "0000077")
			const total = 60
			msg := func(i int) any {
				return message(contact, contact, fmt.Sprintf("CRASH%03d", i), "Crash", text(fmt.Sprintf("crash %03d", i)))
			}
			acked := 0
			for ; acked < total/2; acked++ {
				v.dispatch(conn, msg(acked))
			}
			// Kill while the next messages are in flight: some may be stored, some not.
			done := make(chan int, 1)
			go func() {
				i := acked
				for ; i < total; i++ {
					if err := conn.Dispatch(ctx, msg(i)); err != nil {
						break
					}
				}
				done <- i
			}()
			v.bridge.Kill()
			acked = <-done
			v.start()
			next, err := v.wa.WaitConn(ctx, func(c *fakewa.Conn) bool { return c != conn && fakewa.DeviceOf(v.alicePhone)(c) })
			if err != nil {
				t.Fatal(err)
			}
			// WhatsApp redelivers what was never acknowledged.
			for i := acked; i < total; i++ {
				v.dispatch(next, msg(i))
			}
			last := fmt.Sprintf("crash %03d", total-1)
			room, _, err := v.alice.WaitAnyEvent(ctx, func(_ id.RoomID, e *event.Event) bool {
				return e.Type == event.EventMessage && e.Content.AsMessage().Body == last
			})
			if err != nil {
				t.Fatal(err)
			}
			// Give a duplicate that would follow the last message no chance to hide: a
			// marker sent after it must arrive after everything else.
			v.dispatch(next, message(contact, contact, "CRASHEND", "Crash", text("end marker")))
			v.waitIn(room, "end marker", func(e *event.Event) bool {
				return e.Type == event.EventMessage && e.Content.AsMessage().Body == "end marker"
			})
			var got []string
			for _, e := range v.alice.Events(room) {
				if e.Type == event.EventMessage && e.Sender == ghost(contact.User) {
					got = append(got, e.Content.AsMessage().Body)
				}
			}
			want := make([]string, 0, total+1)
			for i := 0; i < total; i++ {
				want = append(want, fmt.Sprintf("crash %03d", i))
			}
			want = append(want, "end marker")
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("after the crash the room has %d messages %q, want each of the %d once, in order", len(got), got, total)
			}
		})
	}
}
