// Package relaybot tests relay rooms end to end: the real bridge binary through a real
// Dendrite, with a real IRC server (ngircd) and the fake WhatsApp network, on SQLite and
// PostgreSQL.
package relaybot

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/whatsapp/fakewa"
	"github.com/passerelle/passerelle/tests/harness"
)

type stack struct {
	st     *harness.Stack
	bin    string
	dir    string
	port   int
	ngircd *harness.IRCServer
}

var shared *stack // set once by TestMain, read-only afterwards

func TestMain(m *testing.M) {
	params := harness.BridgeConfigParams{Connectors: connectors("127.0.0.1:1", "x", 0)}
	harness.RunSuite(m, "relaybot", []string{"passerelle_loopback"}, params, func(ctx context.Context, s *harness.Suite) (func(), error) {
		ngircd, err := harness.StartIRCServer(ctx, "ngircd", filepath.Join(s.Dir, "ngircd"))
		if err != nil {
			return nil, err
		}
		shared = &stack{st: s.Stack, bin: s.Bin, dir: s.Dir, port: s.Port, ngircd: ngircd}
		return ngircd.Stop, nil
	})
}

// connectors is the variant's connector config: IRC, WhatsApp on the fake network, and
// three relay accounts.
func connectors(waAddr, v string, ircAddr any) map[string]any {
	u := func(name string) string { return id.NewUserID(name+"_"+v, harness.DefaultDomain).String() }
	return map[string]any{
		"irc": map[string]any{"networks": []map[string]any{{"name": "relaynet", "address": ircAddr, "bot_nick": "rbot" + v,
			"messages_per_second": 50, "burst": 50, "channels": []string{}}}},
		"whatsapp": map[string]any{"fake_network": waAddr},
		"relaybot": map[string]any{"accounts": []map[string]any{
			{"name": "support", "network": "irc", "owner": u("support"), "admins": []string{u("boss")},
				"assignees": []string{u("alice"), u("bob")}, "power_level": 40,
				"greeting": "Hello! A team member will answer shortly."},
			{"name": "solo", "network": "irc", "owner": u("solo"), "admins": []string{u("boss")},
				"assignees": []string{u("carol")}, "single_handler_no_prefix": true, "reactions": "text"},
			{"name": "wa", "network": "whatsapp", "owner": u("orgwa"), "admins": []string{u("boss")},
				"team_room": "#team_" + v + ":" + harness.DefaultDomain, "greeting": "Thanks for writing to us."},
		}},
	}
}

// variant is one bridge on one database, with its own users, nicks and fake network.
type variant struct {
	t    *testing.T
	name string
	wa   *fakewa.Server
	// Matrix users: the relay accounts' owners, the team and an admin.
	support, solo, orgwa, alice, bob, carol, dave, boss *harness.User
	team                                                id.RoomID
}

func newVariant(t *testing.T, dbType string) *variant {
	return newVariantWith(t, dbType, dbType[:2], nil)
}

// newVariantWith is newVariant whose users and nicks carry name, with keys of the
// config's bridge: section set or overridden (encryption, say).
func newVariantWith(t *testing.T, dbType, name string, bridgeExtra map[string]any) *variant {
	ctx := testCtx(t)
	v := &variant{t: t, name: name}
	var err error
	if v.wa, err = fakewa.NewServer(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.wa.Close)
	dbURI := filepath.Join(t.TempDir(), "passerelle.db")
	if dbType == "postgres" {
		uri, drop, err := harness.NewPostgresDB(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(drop)
		dbURI = uri
	}
	for _, u := range []struct {
		dst  **harness.User
		name string
	}{{&v.support, "support"}, {&v.solo, "solo"}, {&v.orgwa, "orgwa"}, {&v.alice, "alice"}, {&v.bob, "bob"},
		{&v.carol, "carol"}, {&v.dave, "dave"}, {&v.boss, "boss"}} {
		if *u.dst, err = shared.st.HS.RegisterUser(ctx, u.name+"_"+v.name, false); err != nil {
			t.Fatal(err)
		}
		t.Cleanup((*u.dst).Close)
		display := strings.ToUpper(u.name[:1]) + u.name[1:]
		if err = (*u.dst).SetDisplayName(ctx, display); err != nil {
			t.Fatal(err)
		}
	}
	// The WhatsApp account's team room: its members handle the conversations.
	resp, err := v.boss.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "team_" + v.name,
		Invite: []id.UserID{v.alice.UserID, v.bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	v.team = resp.RoomID
	for _, u := range []*harness.User{v.alice, v.bob} {
		if _, err = u.JoinAndWait(ctx, v.team.String()); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err = shared.st.WriteConfig(cfgPath, harness.BridgeConfigParams{Port: shared.port, DatabaseType: dbType, DatabaseURI: dbURI,
		Permissions: map[string]string{harness.DefaultDomain: "user"}, BridgeExtra: bridgeExtra,
		Connectors: connectors(v.wa.Addr(), v.name, shared.ngircd.Addr)}); err != nil {
		t.Fatal(err)
	}
	b, err := harness.StartBridge(ctx, shared.bin, cfgPath, shared.st.RegPath, filepath.Join(shared.dir, "bridge-"+dbType+"-"+name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bridge log tail:\n%s", b.LogTail(80))
		}
		b.Stop()
	})
	return v
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func bot() id.UserID { return id.NewUserID("passerelle", harness.DefaultDomain) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mgmt opens a user's management room.
func (v *variant) mgmt(u *harness.User) id.RoomID {
	v.t.Helper()
	ctx := testCtx(v.t)
	resp, err := u.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{bot()}})
	must(v.t, err)
	_, err = u.WaitEvent(ctx, resp.RoomID, notice("management room"))
	must(v.t, err)
	return resp.RoomID
}

// command sends a command and waits for the bot's notice containing every part.
func (v *variant) command(u *harness.User, room id.RoomID, cmd string, parts ...string) *event.Event {
	v.t.Helper()
	ctx := testCtx(v.t)
	_, err := u.SendText(ctx, room, cmd)
	must(v.t, err)
	evt, err := u.WaitEvent(ctx, room, notice(parts...))
	if err != nil {
		v.t.Fatalf("after %q: %v", cmd, err)
	}
	return evt
}

// notice matches a bot notice containing every part.
func notice(parts ...string) func(*event.Event) bool {
	return func(e *event.Event) bool {
		if e.Sender != bot() || e.Type != event.EventMessage {
			return false
		}
		body := e.Content.AsMessage().Body
		for _, p := range parts {
			if !strings.Contains(body, p) {
				return false
			}
		}
		return true
	}
}

// ircLogin logs a Matrix user in to relaynet with a nick.
func (v *variant) ircLogin(u *harness.User, nick string) {
	v.t.Helper()
	room := v.mgmt(u)
	v.command(u, room, "login irc relaynet", "Which nick")
	v.command(u, room, nick, "SASL account")
	v.command(u, room, "-", "Saved: you are "+nick)
}

// waitInviteWith waits for an invitation from the bot and joins it.
func joinInvite(t *testing.T, u *harness.User, skip map[id.RoomID]bool) id.RoomID {
	t.Helper()
	ctx := testCtx(t)
	room, err := u.WaitInvite(ctx, func(room id.RoomID, inviter id.UserID) bool { return inviter == bot() && !skip[room] })
	must(t, err)
	_, err = u.JoinAndWait(ctx, room.String())
	must(t, err)
	return room
}

func TestRelayRooms(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			v := newVariant(t, db)
			v.testIRC(t)
			v.testSingleHandler(t)
			v.testWhatsApp(t)
		})
	}
}

// testIRC: an IRC user PMs the relay nick; the conversation becomes a relay room with
// both assignees at their power level, the greeting goes out once, both answer with
// their names, `contacts` lists it and `close` ends it.
func (v *variant) testIRC(t *testing.T) {
	ctx := testCtx(t)
	nick := "support" + v.name
	// The account has no lobby configured: the bridge made one for its team.
	lobby := joinInvite(t, v.alice, nil)
	_, err := v.alice.WaitEvent(ctx, lobby, func(e *event.Event) bool {
		return e.Type == event.StateRoomName && e.Content.AsRoomName().Name == "Relay lobby: support"
	})
	must(t, err)
	if joinInvite(t, v.bob, nil) != lobby {
		t.Fatal("bob was not invited to the lobby")
	}
	v.ircLogin(v.support, nick)
	guest := v.newIRC("guest" + v.name)
	must(t, guest.Privmsg(nick, "hello, is anyone there?"))
	seen := map[id.RoomID]bool{lobby: true}
	room := joinInvite(t, v.alice, seen)
	if joinInvite(t, v.bob, seen) != room {
		t.Fatal("alice and bob were invited to different rooms")
	}
	_, err = v.alice.WaitEvent(ctx, lobby, notice("New conversation with guest"+v.name+" on support", room.URI().MatrixToURL()))
	must(t, err)
	guestGhost := id.NewUserID("irc_relaynet.guest"+v.name, harness.DefaultDomain)
	_, err = v.alice.WaitEvent(ctx, room, harness.TextFrom(guestGhost, "hello, is anyone there?"))
	must(t, err)
	pl := v.waitPL(v.alice, room, v.bob.UserID, 40)
	if pl.Users[v.alice.UserID] != 40 {
		t.Errorf("alice has power %d, want 40", pl.Users[v.alice.UserID])
	}
	// Assignees cannot bring others in to speak as the organisation.
	_, err = v.alice.WaitEvent(ctx, room, func(e *event.Event) bool {
		return e.Type == event.StatePowerLevels && e.Content.AsPowerLevels().Invite() == 100
	})
	must(t, err)
	if _, err = v.alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: v.dave.UserID}); err == nil {
		t.Error("an assignee could invite someone into a relay room")
	}
	_, err = guest.Wait(ctx, harness.PrivmsgFrom(nick, "guest"+v.name, "Hello! A team member will answer shortly."))
	must(t, err)

	_, err = v.alice.SendText(ctx, room, "hi, Alice here")
	must(t, err)
	_, err = guest.Wait(ctx, harness.PrivmsgFrom(nick, "guest"+v.name, "Alice: hi, Alice here"))
	must(t, err)
	_, err = v.bob.SendText(ctx, room, "and Bob")
	must(t, err)
	_, err = guest.Wait(ctx, harness.PrivmsgFrom(nick, "guest"+v.name, "Bob: and Bob"))
	must(t, err)

	// The admin's view.
	bossRoom := v.mgmt(v.boss)
	v.command(v.boss, bossRoom, "contacts", "support: 1 open conversation", "guest"+v.name, v.alice.UserID.String(), v.bob.UserID.String())
	v.command(v.alice, v.mgmt(v.alice), "contacts", "administer no relay account")
	v.command(v.boss, bossRoom, "close "+room.String(), "Closed the conversation")
	_, err = v.alice.WaitEvent(ctx, room, harness.Membership(bot(), event.MembershipLeave))
	must(t, err)
	v.command(v.boss, bossRoom, "contacts", "support: 0 open conversation")

	// The contact writes again: a new room, no second greeting.
	guest.Forget()
	must(t, guest.Privmsg(nick, "me again"))
	room2 := joinInvite(t, v.alice, map[id.RoomID]bool{room: true, lobby: true})
	_, err = v.alice.WaitEvent(ctx, room2, harness.TextFrom(guestGhost, "me again"))
	must(t, err)
	welcome, err := v.alice.SendText(ctx, room2, "welcome back")
	must(t, err)
	_, err = guest.Wait(ctx, harness.PrivmsgFrom(nick, "guest"+v.name, "Alice: welcome back"))
	must(t, err)
	// An edit follows as IRC allows: a "* corrected" line in the edit format.
	edit := &event.MessageEventContent{MsgType: event.MsgText, Body: "* welcome back!"}
	edit.SetEdit(welcome.EventID)
	edit.NewContent = &event.MessageEventContent{MsgType: event.MsgText, Body: "welcome back!"}
	_, err = v.alice.SendMessageEvent(ctx, room2, event.EventMessage, edit)
	must(t, err)
	_, err = guest.Wait(ctx, harness.PrivmsgFrom(nick, "guest"+v.name, "* Alice (edit): welcome back!"))
	must(t, err)
	for _, line := range guest.Lines() {
		if line.Command == "PRIVMSG" && strings.Contains(strings.Join(line.Params, " "), "team member will answer") {
			t.Errorf("the greeting was sent again: %v", line)
		}
	}
	// A reaction cannot be carried for another sender: dropped here (this account
	// does not render them), so nothing but the next message arrives.
	msgs := v.alice.Events(room2)
	last := msgs[len(msgs)-1]
	_, err = v.alice.SendReaction(ctx, room2, last.ID, "👍")
	must(t, err)
	_, err = v.alice.SendText(ctx, room2, "after the reaction")
	must(t, err)
	line, err := guest.Wait(ctx, func(m ircmsg.Message) bool {
		return m.Command == "PRIVMSG" && strings.Contains(m.Params[1], "reacted") || strings.Contains(m.Params[len(m.Params)-1], "after the reaction")
	})
	must(t, err)
	if strings.Contains(line.Params[1], "reacted") {
		t.Errorf("a reaction was relayed as text on an account that drops them: %v", line)
	}
}

func (v *variant) newIRC(nick string) *harness.IRCClient {
	v.t.Helper()
	c, err := harness.DialIRC(testCtx(v.t), shared.ngircd.Addr, nick)
	must(v.t, err)
	v.t.Cleanup(c.Close)
	return c
}

// waitPL waits until user has level in the room's power levels and returns them.
func (v *variant) waitPL(u *harness.User, room id.RoomID, user id.UserID, level int) *event.PowerLevelsEventContent {
	v.t.Helper()
	evt, err := u.WaitEvent(testCtx(v.t), room, func(e *event.Event) bool {
		return e.Type == event.StatePowerLevels && e.Content.AsPowerLevels().Users[user] == level
	})
	must(v.t, err)
	return evt.Content.AsPowerLevels()
}

// testSingleHandler: with one handler the prefix is left out; once a second is
// assigned, names come back. Reactions are said in words on this account.
func (v *variant) testSingleHandler(t *testing.T) {
	ctx := testCtx(t)
	nick := "solo" + v.name
	lobby := joinInvite(t, v.carol, nil)
	v.ircLogin(v.solo, nick)
	guest := v.newIRC("visitor" + v.name)
	must(t, guest.Privmsg(nick, "question"))
	room := joinInvite(t, v.carol, map[id.RoomID]bool{lobby: true})
	ghostID := id.NewUserID("irc_relaynet.visitor"+v.name, harness.DefaultDomain)
	q, err := v.carol.WaitEvent(ctx, room, harness.TextFrom(ghostID, "question"))
	must(t, err)
	_, err = v.carol.SendText(ctx, room, "answer without a prefix")
	must(t, err)
	_, err = guest.Wait(ctx, harness.PrivmsgFrom(nick, "visitor"+v.name, "answer without a prefix"))
	must(t, err)
	_, err = v.carol.SendReaction(ctx, room, q.ID, "👍")
	must(t, err)
	_, err = guest.Wait(ctx, harness.PrivmsgFrom(nick, "visitor"+v.name, "Carol reacted 👍"))
	must(t, err)

	// Only the account's admins may assign. dave shares carol's display name: relayed
	// names are told apart.
	must(t, v.dave.SetDisplayName(ctx, "Carol"))
	carolMgmt := v.mgmt(v.carol)
	v.command(v.carol, carolMgmt, "assign "+room.String()+" "+v.dave.UserID.String(), "nly the admins")
	v.command(v.boss, v.mgmt(v.boss), "assign "+room.String()+" "+v.dave.UserID.String(), "Assigned")
	_, err = v.dave.JoinAndWait(ctx, joinInviteRoom(t, v.dave, room).String())
	must(t, err)
	_, err = v.carol.SendText(ctx, room, "now with a prefix")
	must(t, err)
	_, err = guest.Wait(ctx, harness.PrivmsgFrom(nick, "visitor"+v.name, "Carol ("+v.carol.UserID.String()+"): now with a prefix"))
	must(t, err)
	// unassign takes dave out again.
	v.command(v.boss, v.mgmt(v.boss), "unassign "+room.String()+" "+v.dave.UserID.String(), "Unassigned")
	_, err = v.carol.WaitEvent(ctx, room, harness.Membership(v.dave.UserID, event.MembershipLeave))
	must(t, err)
}

// joinInviteRoom waits for the invitation to a known room.
func joinInviteRoom(t *testing.T, u *harness.User, room id.RoomID) id.RoomID {
	t.Helper()
	got, err := u.WaitInvite(testCtx(t), func(r id.RoomID, _ id.UserID) bool { return r == room })
	must(t, err)
	return got
}

// testWhatsApp: a contact messages the organisation's WhatsApp number; the team room's
// members get the relay room, the greeting goes out, answers carry names.
func (v *variant) testWhatsApp(t *testing.T) {
	ctx := testCtx(t)
	room := v.mgmt(v.orgwa)
	_, err := v.orgwa.SendText(ctx, room, "login whatsapp")
	must(t, err)
	conn, err := v.wa.WaitConn(ctx, fakewa.Unpaired)
	must(t, err)
	must(t, conn.SendQR(ctx, "2@org", time.Minute))
	orgPhone := "4470000" + map[string]string{"sq": "001", "po": "002"}[v.name]
	must(t, conn.PairSuccess(ctx, types.NewADJID(orgPhone, 0, 2), "Org"))
	_, err = v.orgwa.WaitEvent(ctx, room, notice("Logged in to WhatsApp"))
	must(t, err)

	contact := types.NewJID("4479000"+orgPhone[len(orgPhone)-3:], types.DefaultUserServer)
	// What the organisation's phone sends by itself, and the history synced at login,
	// open no conversation: no room, no greeting, no team invited.
	own := &events.Message{Info: types.MessageInfo{MessageSource: types.MessageSource{Chat: contact,
		Sender: types.NewJID(orgPhone, types.DefaultUserServer), IsFromMe: true}, ID: "OWN1", Timestamp: time.Now()},
		Message: &waE2E.Message{Conversation: proto.String("sent from the office phone")}}
	must(t, conn.Dispatch(ctx, own))
	cursor := v.wa.CallCount()
	must(t, conn.Dispatch(ctx, &events.Message{Info: types.MessageInfo{
		MessageSource: types.MessageSource{Chat: contact, Sender: contact}, ID: "C1", PushName: "Customer", Timestamp: time.Now()},
		Message: &waE2E.Message{Conversation: proto.String("my order is late")}}))
	before := map[id.RoomID]bool{}
	for _, inv := range v.alice.Invites() {
		before[inv.RoomID] = true
	}
	relay := joinInvite(t, v.alice, before)
	if joinInvite(t, v.bob, before) != relay {
		t.Fatal("alice and bob were invited to different rooms")
	}
	_, err = v.alice.WaitEvent(ctx, relay, func(e *event.Event) bool {
		return e.Type == event.EventMessage && e.Content.AsMessage().Body == "my order is late"
	})
	must(t, err)
	for _, e := range v.alice.Events(relay) {
		if e.Type == event.EventMessage && e.Content.AsMessage().Body == "sent from the office phone" {
			t.Error("the account's own message, sent before the contact wrote, was bridged into the conversation")
		}
	}
	_, err = v.alice.WaitEvent(ctx, v.team, notice("New conversation with Customer on wa", relay.URI().MatrixToURL()))
	must(t, err)
	sent := func(text string) {
		t.Helper()
		_, idx, err := v.wa.WaitCall(ctx, cursor, func(c *fakewa.Call) bool {
			return c.Op == fakewa.CallSend && c.To == contact && c.Message.GetConversation() == text
		})
		must(t, err)
		cursor = idx + 1
	}
	sent("Thanks for writing to us.")
	_, err = v.alice.SendText(ctx, relay, "sorry, checking")
	must(t, err)
	sent("Alice: sorry, checking")
	_, err = v.bob.SendText(ctx, relay, "it ships today")
	must(t, err)
	sent("Bob: it ships today")

	// Closing from the team room by link: the next message opens a new room, with no
	// second greeting.
	v.command(v.boss, v.mgmt(v.boss), "close "+relay.URI().MatrixToURL(), "Closed the conversation")
	must(t, conn.Dispatch(ctx, &events.Message{Info: types.MessageInfo{
		MessageSource: types.MessageSource{Chat: contact, Sender: contact}, ID: "C2", PushName: "Customer", Timestamp: time.Now()},
		Message: &waE2E.Message{Conversation: proto.String("one more thing")}}))
	before[relay] = true
	relay2 := joinInvite(t, v.alice, before)
	_, err = v.alice.WaitEvent(ctx, relay2, func(e *event.Event) bool {
		return e.Type == event.EventMessage && e.Content.AsMessage().Body == "one more thing"
	})
	must(t, err)
	_, err = v.alice.SendText(ctx, relay2, "yes?")
	must(t, err)
	sent("Alice: yes?")
	greetings := 0
	for i := 0; i < v.wa.CallCount(); i++ {
		if c, _, err := v.wa.WaitCall(ctx, i, func(*fakewa.Call) bool { return true }); err == nil && c.Op == fakewa.CallSend &&
			c.Message.GetConversation() == "Thanks for writing to us." {
			greetings++
		}
	}
	if greetings != 1 {
		t.Errorf("the greeting was sent %d times, want once", greetings)
	}
}
