// Package irc tests the IRC connector end to end: the real bridge binary between a
// real Dendrite and real IRC servers (ngircd, and inspircd for IRCv3), with raw IRC
// clients on the other side.
package irc

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/tests/harness"
)

// stack is one homeserver, IRC servers and a bridge bridging both.
type stack struct {
	hs       *harness.Homeserver
	bin      string
	dir      string
	port     int
	reg      *appservice.Registration
	regPath  string
	cfgPath  string
	ngircd   *harness.IRCServer
	inspircd *harness.IRCServer
	// proxy sits between the bridge and ngircd, so the restart test decides when the
	// bridge may reconnect.
	proxy *harness.TCPProxy
	// deadAddr refuses connections (a closed listener's address).
	deadAddr  string
	bridge    *harness.Bridge
	bridgeLog string
}

var shared *stack // set once by TestMain, read-only afterwards

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "irc e2e setup failed:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func networks(s *stack) map[string]any {
	return map[string]any{"connects_per_second": 50,
		// extended-join gives real names (inspircd): ghosts show them.
		"displayname_template": "{{.}}{{if .RealName}} ({{.RealName}}){{end}}",
		"networks": []map[string]any{
			{"name": "testnet", "address": s.proxy.Addr, "bot_nick": "passbot", "messages_per_second": 50, "burst": 50, "casemapping": "ascii",
				"channels": []string{"#announce"}},
			{"name": "v3net", "address": s.inspircd.Addr, "bot_nick": "passbot", "messages_per_second": 50, "burst": 50,
				"redaction_notice": "{{.Nick}} deleted a message"},
			{"name": "consentnet", "address": s.ngircd.Addr, "bot_nick": "consentbot", "plumb_consent": true},
			{"name": "idlenet", "address": s.ngircd.Addr, "bot_nick": "idlebot", "idle_timeout": "1s", "puppet_nick": "{{.Localpart}}_idle"},
			// rotnet's first server refuses connections: the bridge rotates to the fallback.
			{"name": "rotnet", "address": s.deadAddr, "fallback_addresses": []string{s.ngircd.Addr}, "bot_nick": "rotbot"},
			// relaynet speaks through its bot only: channels there are relay channels.
			{"name": "relaynet", "address": s.ngircd.Addr, "bot_nick": "relaybot", "mode": "relay"},
		}}
}

func setup(m *testing.M) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "passerelle-irc-")
	if err != nil {
		return 0, err
	}
	s := &stack{dir: dir}
	if s.ngircd, err = harness.StartIRCServer(ctx, "ngircd", filepath.Join(dir, "ngircd")); err != nil {
		return 0, err
	}
	defer s.ngircd.Stop()
	if s.inspircd, err = harness.StartIRCServer(ctx, "inspircd", filepath.Join(dir, "inspircd")); err != nil {
		return 0, err
	}
	defer s.inspircd.Stop()
	if s.proxy, err = harness.NewTCPProxy(s.ngircd.Addr); err != nil {
		return 0, err
	}
	defer s.proxy.Close()
	dead, err := harness.FreePort()
	if err != nil {
		return 0, err
	}
	s.deadAddr = fmt.Sprintf("127.0.0.1:%d", dead)
	if s.bin, err = harness.BuildBridge(ctx); err != nil {
		return 0, err
	}
	if s.port, err = harness.FreePort(); err != nil {
		return 0, err
	}
	s.cfgPath = filepath.Join(dir, "config.yaml")
	params := harness.BridgeConfigParams{Port: s.port, DatabaseType: "sqlite", DatabaseURI: filepath.Join(dir, "passerelle.db"),
		Connectors: map[string]any{"irc": networks(s)},
		BridgeExtra: map[string]any{"limits": map[string]any{"dm_rooms_per_login": dmRoomsPerLogin,
			"cleanup_after": cleanupAfter.String()}},
		PublicAddress: fmt.Sprintf("http://127.0.0.1:%d", s.port),
		Permissions: map[string]string{harness.DefaultDomain: "admin",
			id.NewUserID("relayonly", harness.DefaultDomain).String(): "relay"}}
	st, err := harness.StartStack(ctx, dir, s.bin, params)
	if err != nil {
		return 0, err
	}
	defer st.HS.Stop()
	s.hs, s.reg, s.regPath = st.HS, st.Reg, st.RegPath
	if err = st.WriteConfig(s.cfgPath, params); err != nil {
		return 0, err
	}
	s.bridgeLog = filepath.Join(dir, "bridge.log")
	if s.bridge, err = harness.StartBridge(ctx, s.bin, s.cfgPath, s.regPath, s.bridgeLog); err != nil {
		return 0, err
	}
	defer func() { s.bridge.Stop() }()
	shared = s
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "irc e2e logs kept in %s\n--- bridge log tail ---\n%s\n", dir, s.bridge.LogTail(60))
	} else {
		defer os.RemoveAll(dir)
	}
	return code, nil
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ghost(network, nick string) id.UserID {
	return id.NewUserID("irc_"+id.EncodeUserLocalpart(network+"."+strings.ToLower(nick)), harness.DefaultDomain)
}

func bot() id.UserID { return id.NewUserID("passerelle", harness.DefaultDomain) }

func newUser(t *testing.T, localpart string) *harness.User {
	t.Helper()
	u, err := shared.hs.RegisterUser(testCtx(t), localpart, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u
}

func newIRC(t *testing.T, addr, nick string) *harness.IRCClient {
	t.Helper()
	c, err := harness.DialIRC(testCtx(t), addr, nick)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// speakIn has u join the portal of channel on testnet and say text there, and waits
// until watcher (an IRC client in the channel) hears it from puppet: u's puppet is
// then on IRC. It returns the portal.
func speakIn(t *testing.T, ctx context.Context, u *harness.User, watcher *harness.IRCClient, channel, puppet, text string) id.RoomID {
	t.Helper()
	room, err := u.JoinAndWait(ctx, "#irc_testnet_"+channel+":"+harness.DefaultDomain)
	must(t, err)
	_, err = u.SendText(ctx, room, text)
	must(t, err)
	_, err = watcher.Wait(ctx, harness.PrivmsgFrom(puppet, channel, text))
	must(t, err)
	return room
}

func textFrom(sender id.UserID, body string) func(*event.Event) bool {
	return harness.TextFrom(sender, body)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPortalByAlias: a Matrix user and a raw IRC client talk in a portal joined by
// alias, with formatting, a long message, nick changes, topic, ops and kicks.
func TestPortalByAlias(t *testing.T) {
	ctx := testCtx(t)
	addr := shared.ngircd.Addr
	bob := newIRC(t, addr, "ircbob")
	must(t, bob.Join(ctx, "#lobby"))
	alice := newUser(t, "alice")
	room, err := alice.JoinAndWait(ctx, "#irc_testnet_#lobby:"+harness.DefaultDomain)
	must(t, err)
	// bob was in the channel first: his ghost is in the room, as an op.
	_, err = alice.WaitEvent(ctx, room, harness.Membership(ghost("testnet", "ircbob"), ""))
	must(t, err)

	// Channel names are casemapped: #LOBBY is the same portal.
	same, err := alice.JoinAndWait(ctx, "#irc_testnet_#LOBBY:"+harness.DefaultDomain)
	must(t, err)
	if same != room {
		t.Fatalf("#LOBBY led to %s, #lobby to %s", same, room)
	}

	// Matrix → IRC through alice's own puppet (opened on demand).
	_, err = alice.SendText(ctx, room, "hello irc")
	must(t, err)
	_, err = bob.Wait(ctx, harness.PrivmsgFrom("alice[m]", "#lobby", "hello irc"))
	must(t, err)

	// IRC → Matrix from bob's ghost.
	must(t, bob.Privmsg("#lobby", "hello matrix"))
	_, err = alice.WaitEvent(ctx, room, textFrom(ghost("testnet", "ircbob"), "hello matrix"))
	must(t, err)

	// Formatting both ways.
	must(t, bob.Privmsg("#lobby", "\x02bold\x02 and \x1ditalic\x1d"))
	evt, err := alice.WaitEvent(ctx, room, textFrom(ghost("testnet", "ircbob"), "bold and italic"))
	must(t, err)
	if html := evt.Content.AsMessage().FormattedBody; !strings.Contains(html, "<strong>bold</strong>") || !strings.Contains(html, "<em>italic</em>") {
		t.Fatalf("IRC formatting not converted: %q", html)
	}
	_, err = alice.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText,
		Body: "strong words", Format: event.FormatHTML, FormattedBody: "<strong>strong</strong> words"})
	must(t, err)
	_, err = bob.Wait(ctx, harness.PrivmsgFrom("alice[m]", "#lobby", "\x02strong\x02 words"))
	must(t, err)
	_, err = alice.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgEmote, Body: "waves"})
	must(t, err)
	_, err = bob.Wait(ctx, harness.PrivmsgFrom("alice[m]", "#lobby", "\x01ACTION waves\x01"))
	must(t, err)

	// A long message is split on word boundaries within the line length.
	var words []string
	for i := 0; len(strings.Join(words, " ")) < 1200; i++ {
		words = append(words, fmt.Sprintf("word%03d", i))
	}
	long := strings.Join(words, " ")
	_, err = alice.SendText(ctx, room, long)
	must(t, err)
	_, err = bob.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "PRIVMSG" && strings.HasSuffix(m.Params[1], words[len(words)-1])
	})
	must(t, err)
	var got []string
	for _, m := range bob.Lines() {
		if m.Command == "PRIVMSG" && m.Nick() == "alice[m]" && strings.HasPrefix(m.Params[1], "word") {
			if len(m.Params[1]) > 512 {
				t.Fatalf("line of %d bytes", len(m.Params[1]))
			}
			got = append(got, m.Params[1])
		}
	}
	if len(got) < 3 || strings.Join(got, " ") != long {
		t.Fatalf("long message arrived as %d lines that do not join back to the original", len(got))
	}

	// Topic set on IRC shows in the room.
	must(t, bob.Raw("TOPIC #lobby :Bridged lobby"))
	_, err = alice.WaitEvent(ctx, room, func(e *event.Event) bool {
		return e.Type == event.StateTopic && e.Content.AsTopic().Topic == "Bridged lobby"
	})
	must(t, err)

	// Another IRC user joins, is opped (power level), changes nick (the old ghost
	// leaves, the new one joins) and is kicked.
	carol := newIRC(t, addr, "irccarol")
	must(t, carol.Join(ctx, "#lobby"))
	_, err = alice.WaitEvent(ctx, room, harness.Membership(ghost("testnet", "irccarol"), event.MembershipJoin))
	must(t, err)
	must(t, bob.Raw("MODE #lobby +o irccarol"))
	_, err = alice.WaitEvent(ctx, room, func(e *event.Event) bool {
		return e.Type == event.StatePowerLevels && e.Content.AsPowerLevels().Users[ghost("testnet", "irccarol")] == 50
	})
	must(t, err)
	must(t, carol.Raw("NICK irccarol2"))
	_, err = alice.WaitEvent(ctx, room, harness.Membership(ghost("testnet", "irccarol2"), event.MembershipJoin))
	must(t, err)
	must(t, bob.Raw("KICK #lobby irccarol2 :out"))
	_, err = alice.WaitEvent(ctx, room, func(e *event.Event) bool {
		return e.Type == event.StateMember && e.GetStateKey() == ghost("testnet", "irccarol2").String() &&
			e.Content.AsMember().Membership == event.MembershipLeave && e.Sender != ghost("testnet", "irccarol2")
	})
	must(t, err)

	// A Matrix topic change reaches IRC through alice's puppet (she has no ops: +t
	// refuses it, so op her first from IRC).
	must(t, bob.Raw("MODE #lobby +o alice[m]"))
	_, err = bob.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "MODE" && len(m.Params) > 2 && m.Params[2] == "alice[m]"
	})
	must(t, err)
}

// TestDM: private messages both ways open a DM portal.
func TestDM(t *testing.T) {
	ctx := testCtx(t)
	addr := shared.ngircd.Addr
	dan := newIRC(t, addr, "ircdan")
	erin := newUser(t, "erin")
	// erin gets a puppet by joining a portal.
	must(t, dan.Join(ctx, "#dmtest"))
	room, err := erin.JoinAndWait(ctx, "#irc_testnet_#dmtest:"+harness.DefaultDomain)
	must(t, err)
	_, err = erin.SendText(ctx, room, "hi channel")
	must(t, err)
	_, err = dan.Wait(ctx, harness.PrivmsgFrom("erin[m]", "#dmtest", "hi channel"))
	must(t, err)

	must(t, dan.Privmsg("erin[m]", "psst erin"))
	dm, err := erin.WaitInvite(ctx, func(roomID id.RoomID, inviter id.UserID) bool { return inviter == bot() })
	must(t, err)
	_, err = erin.JoinAndWait(ctx, dm.String())
	must(t, err)
	_, err = erin.WaitEvent(ctx, dm, textFrom(ghost("testnet", "ircdan"), "psst erin"))
	must(t, err)
	_, err = erin.SendText(ctx, dm, "psst dan")
	must(t, err)
	_, err = dan.Wait(ctx, harness.PrivmsgFrom("erin[m]", "ircdan", "psst dan"))
	must(t, err)

	// From Matrix: erin invites a ghost to a new room.
	fay := newIRC(t, addr, "ircfay")
	resp, err := erin.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{ghost("testnet", "ircfay")}})
	must(t, err)
	_, err = erin.WaitEvent(ctx, resp.RoomID, harness.Membership(ghost("testnet", "ircfay"), event.MembershipJoin))
	must(t, err)
	_, err = erin.SendText(ctx, resp.RoomID, "hello fay")
	must(t, err)
	_, err = fay.Wait(ctx, harness.PrivmsgFrom("erin[m]", "ircfay", "hello fay"))
	must(t, err)
}

// TestPlumbing links an existing room to a channel.
func TestPlumbing(t *testing.T) {
	ctx := testCtx(t)
	gus := newIRC(t, shared.ngircd.Addr, "ircgus")
	must(t, gus.Join(ctx, "#plumbed"))
	hank := newUser(t, "hank")
	resp, err := hank.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Hank's room", Invite: []id.UserID{bot()}})
	must(t, err)
	room := resp.RoomID
	_, err = hank.WaitEvent(ctx, room, func(e *event.Event) bool { return e.Sender == bot() })
	must(t, err)
	_, err = hank.SendText(ctx, room, "!pass plumb irc testnet #plumbed")
	must(t, err)
	_, err = hank.WaitEvent(ctx, room, func(e *event.Event) bool {
		return e.Sender == bot() && strings.Contains(e.Content.AsMessage().Body, "now linked")
	})
	must(t, err)
	_, err = hank.WaitEvent(ctx, room, harness.Membership(ghost("testnet", "ircgus"), ""))
	must(t, err)
	must(t, gus.Privmsg("#plumbed", "hi plumbed room"))
	_, err = hank.WaitEvent(ctx, room, textFrom(ghost("testnet", "ircgus"), "hi plumbed room"))
	must(t, err)
	_, err = hank.SendText(ctx, room, "hi gus")
	must(t, err)
	_, err = gus.Wait(ctx, harness.PrivmsgFrom("hank[m]", "#plumbed", "hi gus"))
	must(t, err)
}

// TestIRCv3 runs the basic exchange on inspircd, which offers server-time, msgid,
// echo-message and the other IRCv3 capabilities.
func TestIRCv3(t *testing.T) {
	ctx := testCtx(t)
	ivy := newIRC(t, shared.inspircd.Addr, "ircivy")
	must(t, ivy.Join(ctx, "#v3"))
	jo := newUser(t, "jo")
	room, err := jo.JoinAndWait(ctx, "#irc_v3net_#v3:"+harness.DefaultDomain)
	must(t, err)
	must(t, ivy.Privmsg("#v3", "hello from inspircd"))
	_, err = jo.WaitEvent(ctx, room, textFrom(ghost("v3net", "ircivy"), "hello from inspircd"))
	must(t, err)
	_, err = jo.SendText(ctx, room, "hello from matrix")
	must(t, err)
	_, err = ivy.Wait(ctx, harness.PrivmsgFrom("jo[m]", "#v3", "hello from matrix"))
	must(t, err)
	// inspircd offers echo-message: the bridge waits for each line's echo as delivery
	// confirmation. A missed confirmation would make the core retry and repeat lines.
	_, err = jo.SendText(ctx, room, "second line")
	must(t, err)
	_, err = ivy.Wait(ctx, harness.PrivmsgFrom("jo[m]", "#v3", "second line"))
	must(t, err)
	count := 0
	for _, m := range ivy.Lines() {
		if harness.PrivmsgFrom("jo[m]", "#v3", "hello from matrix")(m) {
			count++
		}
	}
	if count != 1 {
		t.Fatalf("the first line arrived %d times", count)
	}
	// extended-join: a newcomer's ghost shows their real name.
	jay := newIRC(t, shared.inspircd.Addr, "ircjay")
	must(t, jay.Join(ctx, "#v3"))
	_, err = jo.WaitEvent(ctx, room, func(e *event.Event) bool {
		return e.Type == event.StateMember && e.GetStateKey() == ghost("v3net", "ircjay").String() &&
			e.Content.AsMember().Displayname == "ircjay (ircjay test user)"
	})
	must(t, err)

	// away-notify: ivy going away shows as her ghost's presence.
	must(t, ivy.Raw("AWAY :at lunch"))
	for {
		p, err := jo.GetPresence(ctx, ghost("v3net", "ircivy"))
		if err == nil && p.Presence == event.PresenceUnavailable && p.StatusMsg == "at lunch" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ghost presence never became away: %+v %v", p, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// A deletion cannot be carried: v3net is configured to say so with a notice.
	// (Dendrite does not push redactions to appservices, so it is handed over directly.)
	sent, err := jo.SendText(ctx, room, "oops")
	must(t, err)
	_, err = ivy.Wait(ctx, harness.PrivmsgFrom("jo[m]", "#v3", "oops"))
	must(t, err)
	redaction, err := jo.RedactEvent(ctx, room, sent.EventID)
	must(t, err)
	pushRedaction(t, jo.UserID, room, redaction.EventID, sent.EventID)
	_, err = ivy.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "NOTICE" && m.Nick() == "jo[m]" && len(m.Params) == 2 && m.Params[1] == "jo[m] deleted a message"
	})
	must(t, err)
	logData, err := os.ReadFile(shared.bridgeLog)
	must(t, err)
	if strings.Contains(string(logData), "did not confirm") {
		t.Fatal("a line was not confirmed by echo-message")
	}
}

// TestServerRestart restarts the IRC server mid-conversation: the bridge reconnects,
// rejoins, and a message sent from Matrix during the outage is delivered.
func TestServerRestart(t *testing.T) {
	ctx := testCtx(t)
	addr := shared.ngircd.Addr
	kim := newIRC(t, addr, "irckim")
	must(t, kim.Join(ctx, "#restart"))
	lee := newUser(t, "lee")
	room, err := lee.JoinAndWait(ctx, "#irc_testnet_#restart:"+harness.DefaultDomain)
	must(t, err)
	_, err = lee.SendText(ctx, room, "before restart")
	must(t, err)
	_, err = kim.Wait(ctx, harness.PrivmsgFrom("lee[m]", "#restart", "before restart"))
	must(t, err)

	// The bridge may only reconnect once kim is back in the channel, so the message
	// sent during the outage has someone to reach.
	shared.proxy.Hold()
	shared.ngircd.Stop()
	_, err = lee.SendText(ctx, room, "during outage")
	must(t, err)
	must(t, shared.ngircd.Start(ctx))
	kim2 := newIRC(t, addr, "irckim")
	must(t, kim2.Join(ctx, "#restart"))
	shared.proxy.Release()
	_, err = kim2.Wait(ctx, harness.PrivmsgFrom("lee[m]", "#restart", "during outage"))
	must(t, err)
	must(t, kim2.Privmsg("#restart", "after restart"))
	_, err = lee.WaitEvent(ctx, room, textFrom(ghost("testnet", "irckim"), "after restart"))
	must(t, err)
}

// TestMoreBehaviour covers mentions, replies, media links, the relay for users without
// a puppet, Matrix leaves and topics, and channels bridged from the config at start.
func TestMoreBehaviour(t *testing.T) {
	ctx := testCtx(t)
	addr := shared.ngircd.Addr
	// #announce is in the config: its portal existed before any Matrix user, so a line
	// said now is in the room's history when mia joins later.
	// #announce is in the config: its portal was created when the bridge started, not
	// by mia's alias join. Channel portals only show history from one's own join on.
	joinedAt := time.Now()
	mia := newUser(t, "mia")
	annRoom, err := mia.JoinAndWait(ctx, "#irc_testnet_#announce:"+harness.DefaultDomain)
	must(t, err)
	create, err := mia.WaitEvent(ctx, annRoom, func(e *event.Event) bool { return e.Type == event.StateCreate })
	must(t, err)
	if create.Sender != bot() || time.UnixMilli(create.Timestamp).After(joinedAt) {
		t.Fatalf("the configured channel's portal was not created at start (created %v by %s)", time.UnixMilli(create.Timestamp), create.Sender)
	}
	hv, err := mia.WaitEvent(ctx, annRoom, func(e *event.Event) bool { return e.Type == event.StateHistoryVisibility })
	must(t, err)
	if v := hv.Content.AsHistoryVisibility().HistoryVisibility; v != event.HistoryVisibilityJoined {
		t.Fatalf("channel portal history visibility is %q, want joined", v)
	}

	nia := newIRC(t, addr, "ircnia")
	must(t, nia.Join(ctx, "#more"))
	room, err := mia.JoinAndWait(ctx, "#irc_testnet_#more:"+harness.DefaultDomain)
	must(t, err)
	_, err = mia.SendText(ctx, room, "mia here")
	must(t, err)
	_, err = nia.Wait(ctx, harness.PrivmsgFrom("mia[m]", "#more", "mia here"))
	must(t, err)

	// An IRC user naming mia's nick pings her.
	must(t, nia.Privmsg("#more", "mia[m]: are you there?"))
	ping, err := mia.WaitEvent(ctx, room, textFrom(ghost("testnet", "ircnia"), "mia[m]: are you there?"))
	must(t, err)
	msg := ping.Content.AsMessage()
	if msg.Mentions == nil || len(msg.Mentions.UserIDs) == 0 || msg.Mentions.UserIDs[0] != mia.UserID ||
		!strings.Contains(msg.FormattedBody, "https://matrix.to/#/"+mia.UserID.String()) {
		t.Fatalf("mention not converted: %+v", ping.Content.Raw)
	}

	// A reaction shows on IRC as an action line naming whose message it was.
	_, err = mia.SendReaction(ctx, room, ping.ID, "👍")
	must(t, err)
	_, err = nia.Wait(ctx, harness.PrivmsgFrom("mia[m]", "#more", "\x01ACTION reacted 👍 to ircnia\x01"))
	must(t, err)

	// A Matrix reply addresses the IRC user by nick.
	reply := &event.MessageEventContent{MsgType: event.MsgText, Body: "yes I am"}
	reply.RelatesTo = (&event.RelatesTo{}).SetReplyTo(ping.ID)
	_, err = mia.SendMessageEvent(ctx, room, event.EventMessage, reply)
	must(t, err)
	_, err = nia.Wait(ctx, harness.PrivmsgFrom("mia[m]", "#more", "ircnia: yes I am"))
	must(t, err)

	// A file becomes a link IRC users can open, served by the bridge.
	up, err := mia.UploadBytesWithName(ctx, []byte("hello file"), "text/plain", "note.txt")
	must(t, err)
	_, err = mia.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgFile,
		Body: "note.txt", URL: up.ContentURI.CUString(), Info: &event.FileInfo{MimeType: "text/plain", Size: 10}})
	must(t, err)
	line, err := nia.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "PRIVMSG" && m.Nick() == "mia[m]" && strings.Contains(m.Params[1], "/_passerelle/media/")
	})
	must(t, err)
	link := line.Params[1][strings.Index(line.Params[1], "http"):]
	resp, err := http.Get(link)
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello file" {
		t.Fatalf("media link %s gave %d %q", link, resp.StatusCode, body)
	}
	bad, err := http.Get(strings.Replace(link, "/note.txt", "x/note.txt", 1))
	must(t, err)
	bad.Body.Close()
	if bad.StatusCode != http.StatusNotFound {
		t.Fatalf("a tampered media link gave %d, want 404", bad.StatusCode)
	}

	// A message too long for IRC becomes a link to the whole text.
	var paragraph []string
	for i := 0; i < 15; i++ {
		paragraph = append(paragraph, fmt.Sprintf("line %02d of a long paste", i))
	}
	_, err = mia.SendText(ctx, room, strings.Join(paragraph, "\n"))
	must(t, err)
	pasteLine, err := nia.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "PRIVMSG" && m.Nick() == "mia[m]" && strings.Contains(m.Params[1], "(full message: http")
	})
	must(t, err)
	pasteURL := strings.TrimSuffix(pasteLine.Params[1][strings.Index(pasteLine.Params[1], "http"):], ")")
	pasteResp, err := http.Get(pasteURL)
	must(t, err)
	pasted, _ := io.ReadAll(pasteResp.Body)
	pasteResp.Body.Close()
	if string(pasted) != strings.Join(paragraph, "\n") {
		t.Fatalf("paste link gave %q", pasted)
	}

	// A user only allowed to relay speaks through the bot, with their name.
	relayUser := newUser(t, "relayonly")
	must(t, relayUser.SetDisplayName(ctx, "Rita"))
	_, err = relayUser.JoinAndWait(ctx, room.String())
	must(t, err)
	_, err = relayUser.SendText(ctx, room, "hello via relay")
	must(t, err)
	_, err = nia.Wait(ctx, harness.PrivmsgFrom("passbot", "#more", "Rita: hello via relay"))
	must(t, err)
	// The bot renders what it relays as a puppet would: a notice stays a NOTICE, and a
	// message too long for IRC becomes a link to the whole (relay-formatted) text.
	_, err = relayUser.SendNotice(ctx, room, "relayed notice")
	must(t, err)
	_, err = nia.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "NOTICE" && m.Nick() == "passbot" && msgHas(m, "Rita: relayed notice")
	})
	must(t, err)
	_, err = relayUser.SendText(ctx, room, strings.Join(paragraph, "\n"))
	must(t, err)
	relayPaste, err := nia.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "PRIVMSG" && m.Nick() == "passbot" && strings.Contains(m.Params[1], "(full message: http")
	})
	must(t, err)
	if !strings.HasPrefix(relayPaste.Params[1], "Rita: line 00 of a long paste … ") {
		t.Fatalf("relayed long message went out as %q", relayPaste.Params[1])
	}
	relayPasteResp, err := http.Get(strings.TrimSuffix(relayPaste.Params[1][strings.Index(relayPaste.Params[1], "http"):], ")"))
	must(t, err)
	relayPasted, _ := io.ReadAll(relayPasteResp.Body)
	relayPasteResp.Body.Close()
	if string(relayPasted) != "Rita: "+strings.Join(paragraph, "\n") {
		t.Fatalf("relayed paste link gave %q", relayPasted)
	}

	// Matrix topic and leave reach IRC through mia's puppet (opped first: +t).
	must(t, nia.Raw("MODE #more +o mia[m]"))
	_, err = mia.WaitEvent(ctx, room, func(e *event.Event) bool {
		return e.Type == event.StatePowerLevels && e.Content.AsPowerLevels().Users[mia.UserID] == 50
	})
	must(t, err)
	_, err = mia.SendStateEvent(ctx, room, event.StateTopic, "", &event.TopicEventContent{Topic: "topic from matrix"})
	must(t, err)
	_, err = nia.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "TOPIC" && m.Nick() == "mia[m]" && len(m.Params) > 1 && m.Params[1] == "topic from matrix"
	})
	must(t, err)
	// Kicking a ghost from Matrix kicks the IRC user, through mia's opped puppet.
	olly := newIRC(t, addr, "ircolly")
	must(t, olly.Join(ctx, "#more"))
	_, err = mia.WaitEvent(ctx, room, harness.Membership(ghost("testnet", "ircolly"), ""))
	must(t, err)
	_, err = mia.KickUser(ctx, room, &mautrix.ReqKickUser{UserID: ghost("testnet", "ircolly"), Reason: "bye olly"})
	must(t, err)
	_, err = nia.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "KICK" && m.Nick() == "mia[m]" && len(m.Params) > 1 && m.Params[1] == "ircolly"
	})
	must(t, err)
	_, err = mia.LeaveRoom(ctx, room)
	must(t, err)
	_, err = nia.Wait(ctx, func(m ircmsg.Message) bool { return m.Command == "PART" && m.Nick() == "mia[m]" })
	must(t, err)
}

// TestPlumbConsent: on a network configured so, plumbing waits for a channel
// operator's answer on IRC.
func TestPlumbConsent(t *testing.T) {
	ctx := testCtx(t)
	opal := newIRC(t, shared.ngircd.Addr, "ircopal")
	must(t, opal.Join(ctx, "#guarded"))
	owner := newUser(t, "olga")
	for _, c := range []struct{ answer, want string }{{"deny", "declined"}, {"allow", "now linked"}} {
		resp, err := owner.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Olga " + c.answer, Invite: []id.UserID{bot()}})
		must(t, err)
		_, err = owner.WaitEvent(ctx, resp.RoomID, func(e *event.Event) bool { return e.Sender == bot() })
		must(t, err)
		_, err = owner.SendText(ctx, resp.RoomID, "!pass plumb irc consentnet #guarded")
		must(t, err)
		_, err = opal.Wait(ctx, func(m ircmsg.Message) bool {
			return m.Command == "PRIVMSG" && m.Nick() == "consentbot" && strings.Contains(m.Params[1], "asks to link #guarded")
		})
		must(t, err)
		must(t, opal.Privmsg("#guarded", "consentbot: "+c.answer))
		_, err = owner.WaitEvent(ctx, resp.RoomID, func(e *event.Event) bool {
			return e.Sender == bot() && strings.Contains(e.Content.AsMessage().Body, c.want)
		})
		must(t, err)
		// The next round must not see this round's question.
		opal.Forget()
	}
}

// TestLoginFlow sets a nick and SASL identity through the management room's input
// steps; the password message is redacted and the password is never logged.
func TestLoginFlow(t *testing.T) {
	ctx := testCtx(t)
	pat := newUser(t, "pat")
	resp, err := pat.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{bot()}})
	must(t, err)
	mgmt := resp.RoomID
	notice := func(part string) {
		t.Helper()
		_, err := pat.WaitEvent(ctx, mgmt, func(e *event.Event) bool {
			return e.Sender == bot() && strings.Contains(e.Content.AsMessage().Body, part)
		})
		must(t, err)
	}
	notice("management room")
	for _, step := range []struct{ send, expect string }{
		{"login irc testnet", "Which nick"},
		{"patrick", "SASL account"},
		{"patacct", "SASL password"},
	} {
		_, err = pat.SendText(ctx, mgmt, step.send)
		must(t, err)
		notice(step.expect)
	}
	// ngircd has no SASL: the puppet identifies to NickServ instead (played here by a
	// plain client holding that nick).
	nickserv := newIRC(t, shared.ngircd.Addr, "NickServ")
	const secret = "hunter2-very-secret"
	sent, err := pat.SendText(ctx, mgmt, secret)
	must(t, err)
	notice("Saved: you are patrick on testnet")
	_, err = pat.WaitEvent(ctx, mgmt, func(e *event.Event) bool { return e.Type == event.EventRedaction && e.Redacts == sent.EventID })
	must(t, err)

	quinn := newIRC(t, shared.ngircd.Addr, "ircquinn")
	must(t, quinn.Join(ctx, "#logintest"))
	speakIn(t, ctx, pat, quinn, "#logintest", "patrick", "it is me")
	_, err = nickserv.Wait(ctx, harness.PrivmsgFrom("patrick", "NickServ", "IDENTIFY patacct "+secret))
	must(t, err)

	// A channel that refuses the puppet gives a clear reason, not a timeout.
	must(t, quinn.Join(ctx, "#closed"))
	must(t, quinn.Raw("MODE #closed +b patrick!*@*"))
	_, err = quinn.Wait(ctx, func(m ircmsg.Message) bool { return m.Command == "MODE" && msgHas(m, "+b") })
	must(t, err)
	closedRoom, err := pat.JoinAndWait(ctx, "#irc_testnet_#closed:"+harness.DefaultDomain)
	must(t, err)
	_, err = pat.SendText(ctx, closedRoom, "let me in")
	must(t, err)
	_, err = pat.WaitEvent(ctx, closedRoom, func(e *event.Event) bool {
		return e.Sender == bot() && strings.Contains(e.Content.AsMessage().Body, "refused to let you in")
	})
	must(t, err)
	logData, err := os.ReadFile(shared.bridgeLog)
	must(t, err)
	if strings.Contains(string(logData), secret) {
		t.Fatal("the SASL password appears in the bridge log")
	}
}

// TestServerRotation: a network whose first server is down is reached through its
// fallback address.
func TestServerRotation(t *testing.T) {
	ctx := testCtx(t)
	rex := newIRC(t, shared.ngircd.Addr, "ircrex")
	must(t, rex.Join(ctx, "#rot"))
	sue := newUser(t, "sue")
	room, err := sue.JoinAndWait(ctx, "#irc_rotnet_#rot:"+harness.DefaultDomain)
	must(t, err)
	must(t, rex.Privmsg("#rot", "rotated"))
	_, err = sue.WaitEvent(ctx, room, textFrom(ghost("rotnet", "ircrex"), "rotated"))
	must(t, err)
}

// pushRedaction hands a redaction to the bridge as a homeserver would: Dendrite v0.15.2
// never pushes m.room.redaction to appservices (element-hq/dendrite#3445).
func pushRedaction(t *testing.T, sender id.UserID, roomID id.RoomID, redactionID, target id.EventID) {
	t.Helper()
	must(t, harness.PushTransaction(testCtx(t), shared.port, shared.reg.ServerToken, "redact-"+redactionID.String(),
		map[string]any{"events": []any{harness.RedactionEvent(sender, roomID, redactionID, target)}}))
}

func msgHas(m ircmsg.Message, s string) bool {
	for _, p := range m.Params {
		if p == s {
			return true
		}
	}
	return false
}

// TestIdleDisconnect: an idle puppet is disconnected, and reconnects when its user
// speaks again, with nothing lost.
func TestIdleDisconnect(t *testing.T) {
	ctx := testCtx(t)
	una := newIRC(t, shared.ngircd.Addr, "ircuna")
	must(t, una.Join(ctx, "#idle"))
	vic := newUser(t, "vic")
	room, err := vic.JoinAndWait(ctx, "#irc_idlenet_#idle:"+harness.DefaultDomain)
	must(t, err)
	_, err = vic.SendText(ctx, room, "first")
	must(t, err)
	_, err = una.Wait(ctx, harness.PrivmsgFrom("vic_idle", "#idle", "first"))
	must(t, err)
	_, err = una.Wait(ctx, func(m ircmsg.Message) bool { return m.Command == "QUIT" && m.Nick() == "vic_idle" })
	must(t, err)
	_, err = vic.SendText(ctx, room, "back again")
	must(t, err)
	_, err = una.Wait(ctx, harness.PrivmsgFrom("vic_idle", "#idle", "back again"))
	must(t, err)
}

// TestNickTaken: when the puppet's nick is taken it gets another, and its user is told
// in the management room.
func TestNickTaken(t *testing.T) {
	ctx := testCtx(t)
	squatter := newIRC(t, shared.ngircd.Addr, "yan[m]")
	must(t, squatter.Join(ctx, "#nicks"))
	yan := newUser(t, "yan")
	room, err := yan.JoinAndWait(ctx, "#irc_testnet_#nicks:"+harness.DefaultDomain)
	must(t, err)
	_, err = yan.SendText(ctx, room, "hello")
	must(t, err)
	_, err = squatter.Wait(ctx, harness.PrivmsgFrom("yan[m]_", "#nicks", "hello"))
	must(t, err)
	mgmt, err := yan.WaitInvite(ctx, func(roomID id.RoomID, inviter id.UserID) bool { return inviter == bot() })
	must(t, err)
	_, err = yan.JoinAndWait(ctx, mgmt.String())
	must(t, err)
	_, err = yan.WaitEvent(ctx, mgmt, func(e *event.Event) bool {
		return e.Sender == bot() && strings.Contains(e.Content.AsMessage().Body, "yan[m]_ (yan[m] was taken)")
	})
	must(t, err)
}

// TestJoinCommandQuitNotice: `join irc …` from the management room invites the user to
// the portal; an IRC NOTICE arrives as m.notice; an IRC QUIT makes the ghost leave.
func TestJoinCommandQuitNotice(t *testing.T) {
	ctx := testCtx(t)
	zoe := newIRC(t, shared.ngircd.Addr, "irczoe")
	must(t, zoe.Join(ctx, "#joincmd"))
	amy := newUser(t, "amy")
	resp, err := amy.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{bot()}})
	must(t, err)
	_, err = amy.WaitEvent(ctx, resp.RoomID, func(e *event.Event) bool { return e.Sender == bot() })
	must(t, err)
	_, err = amy.SendText(ctx, resp.RoomID, "join irc testnet #joincmd")
	must(t, err)
	room, err := amy.WaitInvite(ctx, func(roomID id.RoomID, inviter id.UserID) bool { return inviter == bot() && roomID != resp.RoomID })
	must(t, err)
	_, err = amy.JoinAndWait(ctx, room.String())
	must(t, err)
	must(t, zoe.Raw("NOTICE #joincmd :a notice"))
	evt, err := amy.WaitEvent(ctx, room, func(e *event.Event) bool {
		return e.Sender == ghost("testnet", "irczoe") && e.Content.AsMessage().Body == "a notice"
	})
	must(t, err)
	if evt.Content.AsMessage().MsgType != event.MsgNotice {
		t.Fatalf("IRC NOTICE arrived as %s", evt.Content.AsMessage().MsgType)
	}
	must(t, zoe.Raw("QUIT :gone fishing"))
	_, err = amy.WaitEvent(ctx, room, harness.Membership(ghost("testnet", "irczoe"), event.MembershipLeave))
	must(t, err)
}
