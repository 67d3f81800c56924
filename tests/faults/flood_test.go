package faults

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/tests/harness"
)

// floodLines is how many lines TestIRCFlood sends into one channel at full speed.
const floodLines = 100_000

func floodGhost(nick string) id.UserID {
	return id.NewUserID("irc_"+id.EncodeUserLocalpart("floodnet."+strings.ToLower(nick)), harness.DefaultDomain)
}

// floodHSDelay is how long the homeserver takes for each request during the flood:
// slow enough that one room's sends (one at a time, in order) fall behind the flood.
const floodHSDelay = 100 * time.Millisecond

// TestIRCFlood: 100,000 lines arrive in one channel far faster than the homeserver, made
// slow for the test, takes them. The bridge's memory stays bounded; another channel on
// the same IRC connection keeps flowing meanwhile; and every flood line is either
// delivered, in order and once, or counted in a notice in the room that says it was
// dropped.
func TestIRCFlood(t *testing.T) {
	// The IRC server relays a flood at its own pace (a few hundred lines a second
	// here): the whole flood takes minutes to pass through it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	flooder, err := harness.DialIRC(ctx, shared.inspircd.Addr, "flooder")
	must(t, err)
	t.Cleanup(flooder.Close)
	must(t, flooder.Join(ctx, "#flood"))
	calm, err := harness.DialIRC(ctx, shared.inspircd.Addr, "calmer")
	must(t, err)
	t.Cleanup(calm.Close)
	must(t, calm.Join(ctx, "#calm"))
	u, err := shared.hs.RegisterUser(ctx, "floodwatch", false)
	must(t, err)
	t.Cleanup(u.Close)
	floodRoom, err := u.JoinAndWait(ctx, "#irc_floodnet_#flood:"+harness.DefaultDomain)
	must(t, err)
	calmRoom, err := u.JoinAndWait(ctx, "#irc_floodnet_#calm:"+harness.DefaultDomain)
	must(t, err)
	must(t, calm.Privmsg("#calm", "calm before"))
	_, err = u.WaitEvent(ctx, calmRoom, harness.TextFrom(floodGhost("calmer"), "calm before"))
	must(t, err)

	shared.hsProxy.SetDelay(floodHSDelay)
	t.Cleanup(func() { shared.hsProxy.SetDelay(0) })
	start := time.Now()
	for i := range floodLines {
		must(t, flooder.Privmsg("#flood", fmt.Sprintf("flood %d", i)))
	}
	flooded := time.Now()
	t.Logf("%d lines written to the IRC server in %s", floodLines, flooded.Sub(start).Round(time.Millisecond))
	// The other channel shares the bot's connection with the flood.
	for i := range 20 {
		must(t, calm.Privmsg("#calm", fmt.Sprintf("calm %d", i)))
	}
	_, err = u.WaitEvent(ctx, calmRoom, harness.TextFrom(floodGhost("calmer"), "calm 19"))
	must(t, err)
	var calmGot []string
	for _, evt := range u.Events(calmRoom) {
		if evt.Type == event.EventMessage && evt.Sender == floodGhost("calmer") {
			calmGot = append(calmGot, evt.Content.AsMessage().Body)
		}
	}
	if len(calmGot) != 21 {
		t.Errorf("the calm channel got %d messages, want 21: %v", len(calmGot), calmGot)
	}
	t.Logf("the calm channel's 20 lines arrived %s after the flood was written", time.Since(flooded).Round(time.Millisecond))

	// Wait until every flood line is accounted for: delivered, or counted as dropped.
	var delivered []int
	dropped, notices := 0, 0
	for {
		delivered, dropped, notices = floodAccount(t, u.Events(floodRoom))
		if len(delivered)+dropped >= floodLines {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("after the flood: %d lines delivered and %d reported dropped of %d", len(delivered), dropped, floodLines)
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Logf("flood accounted for %s after it was written: %d delivered, %d dropped in %d notices",
		time.Since(flooded).Round(time.Millisecond), len(delivered), dropped, notices)
	if len(delivered)+dropped != floodLines {
		t.Errorf("%d delivered + %d dropped = %d, want %d (something was counted twice)", len(delivered), dropped, len(delivered)+dropped, floodLines)
	}
	for i := 1; i < len(delivered); i++ {
		if delivered[i] <= delivered[i-1] {
			t.Fatalf("flood line %d arrived after line %d: out of order or twice", delivered[i], delivered[i-1])
		}
	}
	if len(delivered) == 0 || notices == 0 {
		t.Errorf("want some lines delivered and some reported dropped, got %d delivered and %d notices", len(delivered), notices)
	}
	if peak := peakRSS(t); peak > peakRSSBound {
		t.Errorf("bridge peak RSS %d MiB during the flood, bound %d MiB", peak>>20, peakRSSBound>>20)
	} else {
		t.Logf("bridge peak RSS during the flood: %.1f MiB", float64(peak)/(1<<20))
	}
}

// floodAccount reads the flood room: the numbers of the flood lines delivered, in the
// order they arrived, and how many lines the bridge's notices report dropped.
func floodAccount(t *testing.T, events []*event.Event) (delivered []int, dropped, notices int) {
	for _, evt := range events {
		if evt.Type != event.EventMessage {
			continue
		}
		body := evt.Content.AsMessage().Body
		switch {
		case evt.Sender == floodGhost("flooder") && strings.HasPrefix(body, "flood "):
			n, err := strconv.Atoi(strings.TrimPrefix(body, "flood "))
			if err != nil {
				t.Fatalf("unexpected flood line %q", body)
			}
			delivered = append(delivered, n)
		case strings.Contains(body, "messages of this chat were dropped"):
			n, err := strconv.Atoi(strings.Fields(body)[0])
			if err != nil {
				t.Fatalf("a drop notice without its count: %q", body)
			}
			dropped += n
			notices++
		}
	}
	return delivered, dropped, notices
}
