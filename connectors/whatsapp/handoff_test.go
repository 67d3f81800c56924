package whatsapp

import (
	"sync"
	"testing"
	"time"
)

// TestHandoff: events a freshly paired client delivers before its session exists wait
// for the session, in order, and only its answer acknowledges them; without a session
// they stay unacknowledged.
func TestHandoff(t *testing.T) {
	h := &handoff{ready: make(chan struct{}), wait: time.Minute}
	var mu sync.Mutex
	var got []any
	results := make(chan bool, 3)
	go func() {
		for _, evt := range []any{"first", "second"} {
			results <- h.handle(evt) // blocks until attach
		}
	}()
	select {
	case r := <-results:
		t.Fatalf("an event was answered (%v) before the session attached", r)
	case <-time.After(20 * time.Millisecond):
	}
	h.attach(func(evt any) bool {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, evt)
		return evt != "second" // the session could not store the second one
	})
	if !<-results || <-results {
		t.Error("the session's answers were not passed on to whatsmeow")
	}
	mu.Lock()
	if len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Errorf("session got %v, want both events in order", got)
	}
	mu.Unlock()

	// Nobody takes over: the event is left unacknowledged, so WhatsApp sends it again.
	orphan := &handoff{ready: make(chan struct{}), wait: 10 * time.Millisecond}
	if orphan.handle("lost?") {
		t.Error("an event nobody handled was acknowledged")
	}
}
