package irc

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/tests/harness"
)

// restartBridge stops the shared bridge (SIGTERM, or SIGKILL when kill is set), runs
// during (if any) while it is down, and starts it again on the same config and
// database. It returns the log offset at which the new process starts writing.
func restartBridge(t *testing.T, ctx context.Context, kill bool, during func()) int64 {
	t.Helper()
	if kill {
		shared.bridge.Kill()
	} else {
		shared.bridge.Stop()
	}
	if during != nil {
		during()
	}
	st, err := os.Stat(shared.bridgeLog)
	must(t, err)
	b, err := harness.StartBridge(ctx, shared.bin, shared.cfgPath, shared.regPath, shared.bridgeLog)
	must(t, err)
	shared.bridge = b
	return st.Size()
}

// bridgedChannel is one kind of bridged channel in the restart test.
type bridgedChannel struct {
	kind    string
	network string
	channel string
	room    id.RoomID
	// puppet is the Matrix member's IRC nick when their own puppet is in the channel
	// ("" on relay networks).
	puppet string
}

// TestRestartKeepsChannels: every kind of bridged channel keeps carrying IRC lines to
// Matrix after the bridge restarts, though its Matrix member never spoke, and the
// member's puppet is back in the channel; the bridge's own puppets quitting produce no
// leave events or errors.
func TestRestartKeepsChannels(t *testing.T) {
	for _, stop := range []struct {
		name string
		kill bool
	}{{"sigterm", false}, {"sigkill", true}} {
		t.Run(stop.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			testRestartKeepsChannels(t, ctx, stop.name[3:], stop.kill)
		})
	}
}

func testRestartKeepsChannels(t *testing.T, ctx context.Context, suffix string, kill bool) {
	addr := shared.ngircd.Addr
	talker := newIRC(t, addr, "rs"+suffix)
	reader := newUser(t, "rsreader"+suffix)
	readerNick := "rsreader" + suffix + "[m]"
	mgmt, err := reader.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{bot()}})
	must(t, err)
	_, err = reader.WaitEvent(ctx, mgmt.RoomID, func(e *event.Event) bool { return e.Sender == bot() })
	must(t, err)

	chans := []*bridgedChannel{
		{kind: "alias", network: "testnet", channel: "#rs-alias-" + suffix, puppet: readerNick},
		{kind: "join", network: "testnet", channel: "#rs-join-" + suffix, puppet: readerNick},
		{kind: "plumbed", network: "testnet", channel: "#rs-plumb-" + suffix},
		{kind: "relay", network: "relaynet", channel: "#rs-relay-" + suffix},
	}
	for _, c := range chans {
		must(t, talker.Join(ctx, c.channel))
	}
	// leaver is in the alias channel before the bridge stops and leaves while it is
	// down; comer arrives while it is down.
	leaver := newIRC(t, addr, "rsleaver"+suffix)
	must(t, leaver.Join(ctx, chans[0].channel))
	// Alias portal: joined by alias.
	chans[0].room, err = reader.JoinAndWait(ctx, "#irc_testnet_"+chans[0].channel+":"+harness.DefaultDomain)
	must(t, err)
	_, err = reader.WaitEvent(ctx, chans[0].room, harness.Membership(ghost("testnet", "rsleaver"+suffix), event.MembershipJoin))
	must(t, err)
	// Command portal: `join irc …` from the management room.
	_, err = reader.SendText(ctx, mgmt.RoomID, "join irc testnet "+chans[1].channel)
	must(t, err)
	chans[1].room, err = reader.WaitInvite(ctx, func(roomID id.RoomID, inviter id.UserID) bool {
		return inviter == bot() && roomID != mgmt.RoomID && roomID != chans[0].room
	})
	must(t, err)
	_, err = reader.JoinAndWait(ctx, chans[1].room.String())
	must(t, err)
	// Plumbed room: an existing room linked by its owner.
	plumbed, err := reader.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Plumbed " + suffix, Invite: []id.UserID{bot()}})
	must(t, err)
	chans[2].room = plumbed.RoomID
	_, err = reader.WaitEvent(ctx, chans[2].room, harness.Membership(bot(), event.MembershipJoin))
	must(t, err)
	_, err = reader.SendText(ctx, chans[2].room, "!pass plumb irc testnet "+chans[2].channel)
	must(t, err)
	_, err = reader.WaitEvent(ctx, chans[2].room, func(e *event.Event) bool {
		return e.Sender == bot() && strings.Contains(e.Content.AsMessage().Body, "now linked")
	})
	must(t, err)
	// Relay channel: a network where only the bot speaks.
	chans[3].room, err = reader.JoinAndWait(ctx, "#irc_relaynet_"+chans[3].channel+":"+harness.DefaultDomain)
	must(t, err)

	// Everything flows before the restart; the member's puppet is in its channels.
	for _, c := range chans {
		if c.puppet != "" {
			_, err = talker.Wait(ctx, func(m ircmsg.Message) bool {
				return m.Command == "JOIN" && m.Nick() == c.puppet && strings.EqualFold(msgParam0(m), c.channel)
			})
			must(t, err)
		}
		must(t, talker.Privmsg(c.channel, "before restart "+c.kind))
		_, err = reader.WaitEvent(ctx, c.room, textFrom(ghost(c.network, "rs"+suffix), "before restart "+c.kind))
		must(t, err)
	}

	talker.Forget()
	offset := restartBridge(t, ctx, kill, func() {
		must(t, leaver.Raw("PART "+chans[0].channel+" :gone while the bridge was away"))
		comer := newIRC(t, addr, "rscomer"+suffix)
		must(t, comer.Join(ctx, chans[0].channel))
	})

	// The bot rejoins every bridged channel and the member's puppet comes back on its
	// own; then IRC lines reach every room. (Lines said before the bot is back in a
	// channel are not seen by the bridge: the wait is for the bot too.)
	for _, c := range chans {
		botNick := map[string]string{"testnet": "passbot", "relaynet": "relaybot"}[c.network]
		for _, nick := range []string{botNick, c.puppet} {
			if nick == "" {
				continue
			}
			_, err = talker.Wait(ctx, func(m ircmsg.Message) bool {
				return m.Command == "JOIN" && m.Nick() == nick && strings.EqualFold(msgParam0(m), c.channel)
			})
			must(t, err)
		}
	}
	for _, c := range chans {
		must(t, talker.Privmsg(c.channel, "after restart "+c.kind))
	}
	for _, c := range chans {
		if _, err = reader.WaitEvent(ctx, c.room, textFrom(ghost(c.network, "rs"+suffix), "after restart "+c.kind)); err != nil {
			t.Fatalf("%s channel %s went silent after the restart: %v", c.kind, c.channel, err)
		}
	}
	// The room caught up with who came and went while the bridge was down.
	_, err = reader.WaitEvent(ctx, chans[0].room, harness.Membership(ghost("testnet", "rsleaver"+suffix), event.MembershipLeave))
	must(t, err)
	_, err = reader.WaitEvent(ctx, chans[0].room, harness.Membership(ghost("testnet", "rscomer"+suffix), event.MembershipJoin))
	must(t, err)
	// Our own puppets' QUITs at shutdown made no leave events, so nothing failed.
	assertNoOwnLeaves(t, offset)
	for _, c := range chans {
		for _, e := range reader.Events(c.room) {
			if e.Type == event.StateMember && e.Content.AsMember().Membership == event.MembershipLeave &&
				strings.HasSuffix(string(e.GetStateKey()), "=5bm=5d:"+harness.DefaultDomain) {
				t.Fatalf("a bridge puppet's ghost left %s: %s", c.kind, harness.DescribeEvent(e))
			}
		}
	}
}

func msgParam0(m ircmsg.Message) string {
	if len(m.Params) == 0 {
		return ""
	}
	return m.Params[0]
}

// assertNoOwnLeaves reads the bridge log from offset and fails on any leave event the
// bridge failed to bridge: in this test only the bridge's own connections quit, and
// those must never become Matrix leaves.
func assertNoOwnLeaves(t *testing.T, offset int64) {
	t.Helper()
	data, err := os.ReadFile(shared.bridgeLog)
	must(t, err)
	if offset > int64(len(data)) {
		offset = 0
	}
	ansi := regexp.MustCompile("\x1b\\[[0-9;]*m")
	started := false
	for _, line := range strings.Split(ansi.ReplaceAllString(string(data[offset:]), ""), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 3 && fields[1] == "INF" && strings.Contains(line, "Bridge started") {
			started = true // the log reads as this check expects
		}
		if len(fields) < 2 || (fields[1] != "WRN" && fields[1] != "ERR") {
			continue
		}
		if strings.Contains(line, "remote_event=leave") || strings.Contains(line, "not a member") {
			t.Fatalf("a leave event failed after the restart: %s", line)
		}
	}
	if !started {
		t.Fatal("the restarted bridge's log has no \"Bridge started\" line in the expected format: this check would see nothing")
	}
}

// TestRestartDuringLogin: a login flow waiting for a secret when the bridge restarts is
// stopped with a notice; the secret sent afterwards is deleted unread, never taken for
// a command and echoed back.
func TestRestartDuringLogin(t *testing.T) {
	for _, stop := range []struct {
		name string
		kill bool
	}{{"sigterm", false}, {"sigkill", true}} {
		t.Run(stop.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			user := newUser(t, "rslogin"+stop.name[3:])
			resp, err := user.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{bot()}})
			must(t, err)
			mgmt := resp.RoomID
			notice := func(part string) {
				t.Helper()
				_, err := user.WaitEvent(ctx, mgmt, func(e *event.Event) bool {
					return e.Sender == bot() && strings.Contains(e.Content.AsMessage().Body, part)
				})
				must(t, err)
			}
			notice("management room")
			for _, step := range []struct{ send, expect string }{
				{"login irc testnet", "Which nick"},
				{"rsnick" + stop.name[3:], "SASL account"},
				{"rsacct", "SASL password"},
			} {
				_, err = user.SendText(ctx, mgmt, step.send)
				must(t, err)
				notice(step.expect)
			}
			restartBridge(t, ctx, stop.kill, nil)
			notice("login was stopped")
			secret := "restart-secret-" + stop.name
			sent, err := user.SendText(ctx, mgmt, secret)
			must(t, err)
			_, err = user.WaitEvent(ctx, mgmt, func(e *event.Event) bool { return e.Type == event.EventRedaction && e.Redacts == sent.EventID })
			must(t, err)
			notice("deleted without being read")
			for _, e := range user.Events(mgmt) {
				if e.Sender == bot() && strings.Contains(e.Content.AsMessage().Body, secret) {
					t.Fatalf("the bot repeated the secret: %s", harness.DescribeEvent(e))
				}
			}
			// Commands work as before.
			_, err = user.SendText(ctx, mgmt, "logins")
			must(t, err)
			notice("no logins")
		})
	}
}

// TestOrphanPortalAdopted: a portal room the bridge made but never recorded (a crash
// between the two) holds the channel's alias; the next portal request adopts it instead
// of failing on the taken alias for good.
func TestOrphanPortalAdopted(t *testing.T) {
	ctx := testCtx(t)
	const channel = "#rs-orphan"
	talker := newIRC(t, shared.ngircd.Addr, "rsorphan")
	must(t, talker.Join(ctx, channel))
	// The room the crashed bridge had made: the bot's, with the alias and bridge info.
	botCli, err := shared.hs.NewClient(bot(), shared.reg.AppToken)
	must(t, err)
	stateKey := "passerelle://irc/testnet/" + channel
	orphan, err := botCli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: channel,
		RoomAliasName: "irc_testnet_" + channel,
		InitialState: []*event.Event{{Type: event.StateBridge, StateKey: &stateKey,
			Content: event.Content{Raw: map[string]any{"bridgebot": bot().String(), "protocol": map[string]any{"id": "irc"},
				"channel": map[string]any{"id": "testnet/" + channel}}}}}})
	must(t, err)

	user := newUser(t, "rsorphanuser")
	mgmt, err := user.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{bot()}})
	must(t, err)
	_, err = user.WaitEvent(ctx, mgmt.RoomID, func(e *event.Event) bool { return e.Sender == bot() })
	must(t, err)
	_, err = user.SendText(ctx, mgmt.RoomID, "join irc testnet "+channel)
	must(t, err)
	room, err := user.WaitInvite(ctx, func(roomID id.RoomID, inviter id.UserID) bool { return inviter == bot() && roomID != mgmt.RoomID })
	must(t, err)
	if room != orphan.RoomID {
		t.Fatalf("the portal is %s, not the orphan %s", room, orphan.RoomID)
	}
	_, err = user.JoinAndWait(ctx, room.String())
	must(t, err)
	must(t, talker.Privmsg(channel, "into the adopted room"))
	_, err = user.WaitEvent(ctx, room, textFrom(ghost("testnet", "rsorphan"), "into the adopted room"))
	must(t, err)
}
