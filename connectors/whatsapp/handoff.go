package whatsapp

import (
	"sync"
	"time"
)

// handoffWait bounds how long a freshly paired client holds its events for the session
// the core is about to load.
const handoffWait = 2 * time.Minute

// handoff is a paired client on its way from the login flow to its session. whatsmeow
// starts delivering events (offline messages, the first history sync) as soon as the
// pairing succeeds; its handler holds them, in order, until the session takes over,
// and only then lets whatsmeow acknowledge them.
type handoff struct {
	client  Client
	handler uint32
	// wait is handoffWait (shorter in tests).
	wait time.Duration

	ready  chan struct{}
	once   sync.Once
	mu     sync.Mutex
	target func(any) bool
	dead   bool
}

func newHandoff(client Client) *handoff {
	h := &handoff{client: client, ready: make(chan struct{}), wait: handoffWait}
	h.handler = client.AddEventHandler(h.handle)
	return h
}

// handle waits for the session, then hands it the event.
func (h *handoff) handle(evt any) bool {
	select {
	case <-h.ready:
	case <-time.After(h.wait):
		h.mu.Lock()
		h.dead = true
		h.mu.Unlock()
	}
	h.mu.Lock()
	target, dead := h.target, h.dead
	h.mu.Unlock()
	if target == nil || dead {
		return false // not acknowledged: WhatsApp delivers it again
	}
	return target(evt)
}

// attach makes the session the receiver of the client's events.
func (h *handoff) attach(target func(any) bool) {
	h.mu.Lock()
	h.target, h.dead = target, false
	h.mu.Unlock()
	h.once.Do(func() { close(h.ready) })
}
