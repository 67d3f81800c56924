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

// matrixFloodMessages is how many messages TestMatrixRoomFlood sends at once: more than
// a room may hold waiting (maxQueuePerChat) while slownet takes slowRate a second.
const matrixFloodMessages = 100

// TestMatrixRoomFlood: a Matrix user sends into a room far faster than its IRC channel's
// flood control lets the bridge pass on. Past max_queue_per_chat waiting events the
// room's further messages are dropped and counted, and the room is told how many once
// it caught up; the rest reach IRC once each, in order; and a room elsewhere keeps
// flowing meanwhile (the room never fills bridge.max_queue, which would make every
// transaction get 503).
func TestMatrixRoomFlood(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	watcher, err := harness.DialIRC(ctx, shared.ngircd.Addr, "slowwatch")
	must(t, err)
	t.Cleanup(watcher.Close)
	must(t, watcher.Join(ctx, "#slowroom"))
	u, err := shared.hs.RegisterUser(ctx, "slowsender", false)
	must(t, err)
	t.Cleanup(u.Close)
	room, err := u.JoinAndWait(ctx, "#irc_slownet_#slowroom:"+harness.DefaultDomain)
	must(t, err)
	const puppet = "slowsender[m]"
	_, err = u.SendText(ctx, room, "opening")
	must(t, err)
	_, err = watcher.Wait(ctx, harness.PrivmsgFrom(puppet, "#slowroom", "opening"))
	must(t, err)
	calm := newConversation(t, ctx, "roomflood")

	for i := range matrixFloodMessages {
		_, err = u.SendText(ctx, room, fmt.Sprintf("mflood %d", i))
		must(t, err)
	}
	calm.burst(ctx, "while a room floods", 5, true, true)
	calm.waitAll(ctx)
	t.Logf("another room delivered both ways while the flooding room waited")

	notice, err := u.WaitEvent(ctx, room, func(evt *event.Event) bool {
		return evt.Type == event.EventMessage && strings.Contains(evt.Content.AsMessage().Body, "messages sent here between")
	})
	must(t, err)
	body := notice.Content.AsMessage().Body
	dropped, err := strconv.Atoi(strings.Fields(strings.TrimPrefix(body, "⚠️ "))[0])
	if err != nil {
		t.Fatalf("a drop notice without its count: %q", body)
	}
	if dropped == 0 || dropped >= matrixFloodMessages {
		t.Fatalf("%d of %d messages dropped, want some but not all", dropped, matrixFloodMessages)
	}
	// The rest reach IRC: the notice came once the room's queue was down to half, so
	// what is left still arrives; the test waits for the count, each line once, in order.
	want := matrixFloodMessages - dropped
	var got []int
	for len(got) < want {
		got = got[:0]
		for _, m := range watcher.Lines() {
			if m.Command == "PRIVMSG" && strings.EqualFold(m.Nick(), puppet) && strings.HasPrefix(msgParam(m, 1), "mflood ") {
				n, err := strconv.Atoi(strings.TrimPrefix(msgParam(m, 1), "mflood "))
				must(t, err)
				got = append(got, n)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of the %d messages not dropped reached IRC", len(got), want)
		case <-time.After(200 * time.Millisecond):
		}
	}
	// A marker after the flood arrives after everything: nothing more came in between.
	_, err = u.SendText(ctx, room, "after the flood")
	must(t, err)
	_, err = watcher.Wait(ctx, harness.PrivmsgFrom(puppet, "#slowroom", "after the flood"))
	must(t, err)
	got = got[:0]
	for _, m := range watcher.Lines() {
		if m.Command == "PRIVMSG" && strings.EqualFold(m.Nick(), puppet) && strings.HasPrefix(msgParam(m, 1), "mflood ") {
			n, _ := strconv.Atoi(strings.TrimPrefix(msgParam(m, 1), "mflood "))
			got = append(got, n)
		}
	}
	if len(got) != want {
		t.Errorf("IRC got %d flood messages, want %d (%d dropped of %d)", len(got), want, dropped, matrixFloodMessages)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("message %d reached IRC after message %d: out of order or twice", got[i], got[i-1])
		}
	}
	t.Logf("%d messages sent at once: %d reached IRC in order, %d dropped and told", matrixFloodMessages, len(got), dropped)
}
