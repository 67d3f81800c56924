package irc

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/tests/harness"
)

// dmRoomsPerLogin and cleanupAfter are the suite's bridge.limits: a login's third new
// direct chat in an hour is refused, and the cleanup (run at each start) closes rooms
// that have been empty and quiet for a second.
const (
	dmRoomsPerLogin = 2
	cleanupAfter    = time.Second
)

// TestDMRoomLimitsAndCleanup: new IRC nicks opening direct chats with one Matrix user
// get rooms up to bridge.limits.dm_rooms_per_login; past it the user is told in their
// management room and no room is made. Direct chats the user left are closed by the
// cleanup (cleanup_after is short here; it runs when the bridge starts), their ghosts
// are forgotten with their profile, and the contact writing again opens a new room.
func TestDMRoomLimitsAndCleanup(t *testing.T) {
	ctx := testCtx(t)
	hana := newUser(t, "hana")
	resp, err := hana.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{bot()}})
	must(t, err)
	mgmt := resp.RoomID
	_, err = hana.WaitEvent(ctx, mgmt, func(e *event.Event) bool {
		return e.Sender == bot() && strings.Contains(e.Content.AsMessage().Body, "management room")
	})
	must(t, err)
	// hana's puppet comes to be on IRC by her speaking in a channel.
	lurker := newIRC(t, shared.ngircd.Addr, "lurker")
	must(t, lurker.Join(ctx, "#limits"))
	speakIn(t, ctx, hana, lurker, "#limits", "hana[m]", "here")

	senders := []string{"spam1", "spam2", "spam3"}
	clients := map[string]*harness.IRCClient{}
	for _, nick := range senders {
		clients[nick] = newIRC(t, shared.ngircd.Addr, nick)
		must(t, clients[nick].Privmsg("hana[m]", "hello from "+nick))
	}
	// The refusal names the sender it refused (which one depends on arrival order).
	notice, err := hana.WaitEvent(ctx, mgmt, func(e *event.Event) bool {
		return e.Sender == bot() && strings.Contains(e.Content.AsMessage().Body, "tried to open a new direct chat")
	})
	must(t, err)
	refused := ""
	for _, nick := range senders {
		if strings.Contains(notice.Content.AsMessage().Body, nick) {
			refused = nick
		}
	}
	if refused == "" {
		t.Fatalf("the refusal notice names no sender: %q", notice.Content.AsMessage().Body)
	}
	dms := map[string]id.RoomID{}
	for len(dms) < dmRoomsPerLogin {
		dm, err := hana.WaitInvite(ctx, func(roomID id.RoomID, inviter id.UserID) bool {
			for _, known := range dms {
				if roomID == known {
					return false
				}
			}
			return inviter == bot() && roomID != mgmt
		})
		must(t, err)
		_, err = hana.JoinAndWait(ctx, dm.String())
		must(t, err)
		evt, err := hana.WaitEvent(ctx, dm, func(e *event.Event) bool {
			return e.Type == event.EventMessage && strings.HasPrefix(e.Content.AsMessage().Body, "hello from ")
		})
		must(t, err)
		nick := strings.TrimPrefix(evt.Content.AsMessage().Body, "hello from ")
		if nick == refused {
			t.Fatalf("%s was refused a room and still got one", nick)
		}
		dms[nick] = dm
	}

	// hana leaves both direct chats; at the next start the cleanup closes them.
	var left []string
	for nick, dm := range dms {
		_, err = hana.LeaveRoom(ctx, dm)
		must(t, err)
		left = append(left, nick)
	}
	time.Sleep(2 * cleanupAfter) // the rooms must be older than cleanup_after
	offset := restartBridge(t, ctx, false, nil)
	_, err = waitLogAfter(ctx, offset, "Cleaned up unused direct chats and ghosts")
	must(t, err)
	for _, nick := range left {
		// Their ghosts were in no other room: forgotten, with their names.
		name, err := hana.GetDisplayName(ctx, ghost("testnet", nick))
		if err == nil && name.DisplayName != "" {
			t.Errorf("%s's ghost still shows the name %q after the cleanup", nick, name.DisplayName)
		}
	}
	// A contact writing again opens a new room.
	again := left[0]
	must(t, clients[again].Privmsg("hana[m]", "me again"))
	dm, err := hana.WaitInvite(ctx, func(roomID id.RoomID, inviter id.UserID) bool {
		return inviter == bot() && roomID != dms[again] && roomID != mgmt && roomID != dms[left[len(left)-1]]
	})
	must(t, err)
	_, err = hana.JoinAndWait(ctx, dm.String())
	must(t, err)
	_, err = hana.WaitEvent(ctx, dm, textFrom(ghost("testnet", again), "me again"))
	must(t, err)
}

// waitLogAfter waits for a bridge log line holding text, written after offset.
func waitLogAfter(ctx context.Context, offset int64, text string) (string, error) {
	ansi := regexp.MustCompile("\x1b\\[[0-9;]*m")
	for {
		data, err := os.ReadFile(shared.bridgeLog)
		if err != nil {
			return "", err
		}
		if offset <= int64(len(data)) {
			for _, line := range strings.Split(ansi.ReplaceAllString(string(data[offset:]), ""), "\n") {
				if strings.Contains(line, text) {
					return line, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
