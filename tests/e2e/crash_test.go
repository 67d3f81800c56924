package e2e

import (
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/passerelle/passerelle/connectors/loopback/loopnet"
)

const streamSize = 200

// testCrashRecovery kills the bridge with SIGKILL in the middle of a stream of messages
// in each direction and restarts it: every message arrives exactly once, in order.
func (v *variant) testCrashRecovery(t *testing.T) {
	ctx := v.ctx()
	portal, err := v.alice.JoinAndWait(ctx, "#loopback_"+strings.TrimPrefix(v.stream, "#")+":"+shared.hs.Domain)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("matrix to network", func(t *testing.T) {
		sent := make(chan error, 1)
		go func() {
			for i := 0; i < streamSize; i++ {
				if _, err := v.alice.SendText(ctx, portal, fmt.Sprintf("m2n %03d", i)); err != nil {
					sent <- err
					return
				}
			}
			sent <- nil
		}()
		// Kill once part of the stream has crossed, while the rest is in flight.
		if _, err := v.net.WaitEvent(ctx, v.stream, netText(v.account, "m2n 040")); err != nil {
			t.Fatal(err)
		}
		v.bridge.Kill()
		v.start()
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		if _, err := v.net.WaitEvent(ctx, v.stream, netText(v.account, fmt.Sprintf("m2n %03d", streamSize-1))); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range v.net.Events(v.stream) {
			if e.Kind == loopnet.KindMessage && e.Sender == v.account {
				got = append(got, e.Text)
			}
		}
		checkSequence(t, "m2n", got)
	})

	t.Run("network to matrix", func(t *testing.T) {
		go func() {
			for i := 0; i < streamSize; i++ {
				v.net.Inject(loopnet.Event{Chat: v.stream, Sender: "streamer", Text: fmt.Sprintf("n2m %03d", i)})
			}
		}()
		if _, err := v.alice.WaitEvent(ctx, portal, textFrom(ghost("streamer"), "n2m 040")); err != nil {
			t.Fatal(err)
		}
		v.bridge.Kill()
		v.start()
		if _, err := v.alice.WaitEvent(ctx, portal, textFrom(ghost("streamer"), fmt.Sprintf("n2m %03d", streamSize-1))); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range v.alice.Events(portal) {
			if e.Type == event.EventMessage && e.Sender == ghost("streamer") {
				got = append(got, e.Content.AsMessage().Body)
			}
		}
		checkSequence(t, "n2m", got)
	})
}

// checkSequence asserts got is exactly "<prefix> 000" … in order, each once.
func checkSequence(t *testing.T, prefix string, got []string) {
	t.Helper()
	if len(got) != streamSize {
		t.Errorf("%d messages arrived, want %d", len(got), streamSize)
	}
	for i, body := range got {
		if want := fmt.Sprintf("%s %03d", prefix, i); body != want {
			t.Fatalf("message %d is %q, want %q (arrived: %v)", i, body, want, got)
		}
	}
}
