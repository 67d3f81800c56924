package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/loopback/loopnet"
	"github.com/passerelle/passerelle/tests/harness"
)

// TestCore runs the whole core scenario on each database. Steps build on each other
// (the login is used by the portal steps), so they run in order inside one variant.
func TestCore(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			v := newVariant(t, db)
			v.testTokens(t)
			mgmt := v.testManagementLogin(t)
			portal := v.testAliasPortal(t)
			v.testMessagesBothWays(t, portal)
			v.testMetrics(t)
			v.testDoublePuppet(t, portal)
			dm := v.testDMPortals(t, mgmt)
			v.testPlumbing(t, portal)
			v.testCrashRecovery(t)
			v.testLogout(t, mgmt, dm)
		})
	}
}

func (v *variant) testTokens(t *testing.T) {
	base := fmt.Sprintf("http://127.0.0.1:%d", shared.port)
	cases := []struct {
		name, method, path, token, body string
		status                          int
		errcode                         string
	}{
		{"wrong token", http.MethodPut, "/_matrix/app/v1/transactions/t1", "wrong", `{"events":[]}`, 403, "M_FORBIDDEN"},
		{"missing token", http.MethodPut, "/_matrix/app/v1/transactions/t2", "", `{"events":[]}`, 401, "M_MISSING_TOKEN"},
		{"wrong token on user query", http.MethodGet, "/_matrix/app/v1/users/@loopback_x:hs.test", "wrong", "", 403, "M_FORBIDDEN"},
		{"malformed body", http.MethodPut, "/_matrix/app/v1/transactions/t3", shared.reg.ServerToken, `{"events":[`, 400, "M_NOT_JSON"},
		{"unknown event types are accepted", http.MethodPut, "/_matrix/app/v1/transactions/t4", shared.reg.ServerToken,
			`{"events":[{"type":"org.example.odd","room_id":"!x:hs.test","event_id":"$odd1","sender":"@x:hs.test","content":{}}]}`, 200, ""},
		{"ping", http.MethodPost, "/_matrix/app/v1/ping", shared.reg.ServerToken, `{}`, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			if resp.StatusCode != c.status || !strings.Contains(buf.String(), c.errcode) {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, buf.String(), c.status, c.errcode)
			}
		})
	}
}

// testManagementLogin opens a DM with the bot and logs in with the QR flow: the code is
// posted as an image, replaced when it rotates, and the login succeeds.
func (v *variant) testManagementLogin(t *testing.T) id.RoomID {
	ctx := v.ctx()
	resp, err := v.alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{bot()}})
	if err != nil {
		t.Fatal(err)
	}
	mgmt := resp.RoomID
	if _, err = v.alice.WaitEvent(ctx, mgmt, noticeFrom(bot(), "management room")); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.SendText(ctx, mgmt, "login loopback"); err != nil {
		t.Fatal(err)
	}
	first, err := v.alice.WaitEvent(ctx, mgmt, func(e *event.Event) bool {
		m := e.Content.AsMessage()
		return e.Sender == bot() && m.MsgType == event.MsgImage && m.RelatesTo == nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if info := first.Content.AsMessage().Info; info == nil || info.MimeType != "image/png" {
		t.Fatalf("QR image has no PNG info: %+v", first.Content.Raw)
	}
	png, err := v.alice.DownloadBytes(ctx, first.Content.AsMessage().URL.ParseOrIgnore())
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("QR image is not a PNG (err %v, %d bytes)", err, len(png))
	}
	loginID, _, ok := v.net.PendingLogin()
	if !ok {
		t.Fatal("no pending login on the network")
	}
	v.net.RotateLogin(loginID)
	if _, err = v.alice.WaitEvent(ctx, mgmt, func(e *event.Event) bool {
		m := e.Content.AsMessage()
		return e.Sender == bot() && m.RelatesTo != nil && m.RelatesTo.GetReplaceID() == first.ID &&
			m.NewContent != nil && m.NewContent.MsgType == event.MsgImage
	}); err != nil {
		t.Fatalf("rotated QR code did not replace the image: %v", err)
	}
	v.net.ConfirmLogin(loginID, v.account)
	if _, err = v.alice.WaitEvent(ctx, mgmt, noticeFrom(bot(), "Logged in", v.account)); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.SendText(ctx, mgmt, "logins"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.WaitEvent(ctx, mgmt, noticeFrom(bot(), v.account, "connected")); err != nil {
		t.Fatal(err)
	}
	// Unknown commands and bad arguments get a usage notice, and help lists only what
	// the caller may run.
	if _, err = v.alice.SendText(ctx, mgmt, "frobnicate"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.WaitEvent(ctx, mgmt, noticeFrom(bot(), "Unknown command `frobnicate`")); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.SendText(ctx, mgmt, "join"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.WaitEvent(ctx, mgmt, noticeFrom(bot(), "Usage: `join <network> <chat>`")); err != nil {
		t.Fatal(err)
	}
	return mgmt
}

// testAliasPortal joins a portal by alias: the alias query creates it.
func (v *variant) testAliasPortal(t *testing.T) id.RoomID {
	ctx := v.ctx()
	alias := fmt.Sprintf("#loopback_%s:%s", strings.TrimPrefix(v.lobby, "#"), shared.hs.Domain)
	roomID, err := v.alice.JoinAndWait(ctx, alias)
	if err != nil {
		t.Fatal(err)
	}
	var info event.BridgeEventContent
	if err = v.alice.StateEvent(ctx, roomID, event.StateBridge, "passerelle://loopback/"+v.lobby, &info); err != nil {
		t.Fatalf("portal has no m.bridge state: %v", err)
	}
	if info.BridgeBot != bot() || info.Protocol.ID != "loopback" || info.Channel.ID != v.lobby {
		t.Fatalf("unexpected bridge info %+v", info)
	}
	return roomID
}

func (v *variant) testMessagesBothWays(t *testing.T, portal id.RoomID) {
	ctx := v.ctx()
	// Remote → Matrix, from a ghost.
	hello := v.net.Inject(loopnet.Event{Chat: v.lobby, Sender: "bob", SenderName: "Bob Remote", Text: "hello from loopnet"})
	bobMsg, err := v.alice.WaitEvent(ctx, portal, textFrom(ghost("bob"), "hello from loopnet"))
	if err != nil {
		t.Fatal(err)
	}
	// Matrix → remote, through alice's own login.
	aliceResp, err := v.alice.SendText(ctx, portal, "hello from matrix")
	if err != nil {
		t.Fatal(err)
	}
	aliceNet, err := v.net.WaitEvent(ctx, v.lobby, netText(v.account, "hello from matrix"))
	if err != nil {
		t.Fatal(err)
	}

	// Remote edit, reply, reaction and redaction map onto the right Matrix events.
	v.net.Inject(loopnet.Event{Kind: loopnet.KindEdit, Chat: v.lobby, Sender: "bob", Target: hello.ID, Text: "hello (edited)"})
	if _, err = v.alice.WaitEvent(ctx, portal, func(e *event.Event) bool {
		m := e.Content.AsMessage()
		return e.Sender == ghost("bob") && m.RelatesTo != nil && m.RelatesTo.GetReplaceID() == bobMsg.ID &&
			m.NewContent != nil && m.NewContent.Body == "hello (edited)"
	}); err != nil {
		t.Fatalf("remote edit: %v", err)
	}
	v.net.Inject(loopnet.Event{Chat: v.lobby, Sender: "bob", Text: "replying to you", ReplyTo: aliceNet.ID})
	if _, err = v.alice.WaitEvent(ctx, portal, func(e *event.Event) bool {
		m := e.Content.AsMessage()
		return e.Sender == ghost("bob") && m.Body == "replying to you" && m.RelatesTo != nil &&
			m.RelatesTo.GetReplyTo() == aliceResp.EventID
	}); err != nil {
		t.Fatalf("remote reply: %v", err)
	}
	v.net.Inject(loopnet.Event{Kind: loopnet.KindReact, Chat: v.lobby, Sender: "bob", Target: aliceNet.ID, Emoji: "👍"})
	if _, err = v.alice.WaitEvent(ctx, portal, func(e *event.Event) bool {
		r := e.Content.AsReaction()
		return e.Type == event.EventReaction && e.Sender == ghost("bob") && r.RelatesTo.EventID == aliceResp.EventID && r.RelatesTo.Key == "👍"
	}); err != nil {
		t.Fatalf("remote reaction: %v", err)
	}
	v.net.Inject(loopnet.Event{Kind: loopnet.KindRedact, Chat: v.lobby, Sender: "bob", Target: hello.ID})
	if _, err = v.alice.WaitEvent(ctx, portal, func(e *event.Event) bool {
		return e.Type == event.EventRedaction && e.Redacts == bobMsg.ID
	}); err != nil {
		t.Fatalf("remote redaction: %v", err)
	}

	// Matrix edit, reply, reaction and redaction reach the network with remote IDs.
	second := v.net.Inject(loopnet.Event{Chat: v.lobby, Sender: "bob", Text: "second"})
	secondMx, err := v.alice.WaitEvent(ctx, portal, textFrom(ghost("bob"), "second"))
	if err != nil {
		t.Fatal(err)
	}
	edit := &event.MessageEventContent{MsgType: event.MsgText, Body: "hello again"}
	edit.SetEdit(aliceResp.EventID)
	if _, err = v.alice.SendMessageEvent(ctx, portal, event.EventMessage, edit); err != nil {
		t.Fatal(err)
	}
	if _, err = v.net.WaitEvent(ctx, v.lobby, func(e loopnet.Event) bool {
		return e.Kind == loopnet.KindEdit && e.Target == aliceNet.ID && e.Text == "hello again"
	}); err != nil {
		t.Fatalf("matrix edit: %v", err)
	}
	reply := &event.MessageEventContent{MsgType: event.MsgText, Body: "answering second"}
	reply.RelatesTo = (&event.RelatesTo{}).SetReplyTo(secondMx.ID)
	if _, err = v.alice.SendMessageEvent(ctx, portal, event.EventMessage, reply); err != nil {
		t.Fatal(err)
	}
	if _, err = v.net.WaitEvent(ctx, v.lobby, func(e loopnet.Event) bool {
		return e.Kind == loopnet.KindMessage && e.Text == "answering second" && e.ReplyTo == second.ID
	}); err != nil {
		t.Fatalf("matrix reply: %v", err)
	}
	react, err := v.alice.SendReaction(ctx, portal, secondMx.ID, "🎉")
	if err != nil {
		t.Fatal(err)
	}
	if _, err = v.net.WaitEvent(ctx, v.lobby, func(e loopnet.Event) bool {
		return e.Kind == loopnet.KindReact && e.Target == second.ID && e.Emoji == "🎉" && e.Sender == v.account
	}); err != nil {
		t.Fatalf("matrix reaction: %v", err)
	}
	v.redact(t, portal, react.EventID)
	if _, err = v.net.WaitEvent(ctx, v.lobby, func(e loopnet.Event) bool {
		return e.Kind == loopnet.KindUnreact && e.Target == second.ID && e.Emoji == "🎉"
	}); err != nil {
		t.Fatalf("matrix reaction removal: %v", err)
	}
	v.redact(t, portal, aliceResp.EventID)
	if _, err = v.net.WaitEvent(ctx, v.lobby, func(e loopnet.Event) bool {
		return e.Kind == loopnet.KindRedact && e.Target == aliceNet.ID
	}); err != nil {
		t.Fatalf("matrix redaction: %v", err)
	}

	// Typing and read receipts (ephemeral events, which Dendrite does not push to
	// appservices) reach the network through the user's login; the MSC2409 key works too.
	v.pushRaw(t, "typing-"+v.name, map[string]any{"ephemeral": []any{map[string]any{"type": "m.typing", "room_id": portal,
		"content": map[string]any{"user_ids": []id.UserID{v.alice.UserID}}}}})
	if _, err = v.net.WaitEvent(ctx, v.lobby, func(e loopnet.Event) bool {
		return e.Kind == loopnet.KindTyping && e.Sender == v.account && e.Text != "stop"
	}); err != nil {
		t.Fatalf("matrix typing: %v", err)
	}
	v.pushRaw(t, "receipt-"+v.name, map[string]any{"de.sorunome.msc2409.ephemeral": []any{map[string]any{"type": "m.receipt", "room_id": portal,
		"content": map[string]any{secondMx.ID.String(): map[string]any{"m.read": map[string]any{v.alice.UserID.String(): map[string]any{"ts": time.Now().UnixMilli()}}}}}}})
	if _, err = v.net.WaitEvent(ctx, v.lobby, func(e loopnet.Event) bool {
		return e.Kind == loopnet.KindReceipt && e.Sender == v.account && e.Target == second.ID
	}); err != nil {
		t.Fatalf("matrix read receipt: %v", err)
	}
}

// testDoublePuppet: what the user does from their own device shows up as their real
// Matrix account, and is not echoed back to the network.
func (v *variant) testDoublePuppet(t *testing.T, portal id.RoomID) {
	ctx := v.ctx()
	v.net.Inject(loopnet.Event{Chat: v.lobby, Sender: v.account, Text: "sent from my phone"})
	evt, err := v.alice.WaitEvent(ctx, portal, textFrom(v.alice.UserID, "sent from my phone"))
	if err != nil {
		t.Fatal(err)
	}
	if evt.Content.Raw["fi.mau.double_puppet_source"] == nil {
		t.Fatalf("double-puppeted event lacks the marker: %v", evt.Content.Raw)
	}
	// A later message proves the queue moved past it; the phone message must appear on
	// the network exactly once (the original), never echoed.
	if _, err = v.alice.SendText(ctx, portal, "after phone"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.net.WaitEvent(ctx, v.lobby, netText(v.account, "after phone")); err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, e := range v.net.Events(v.lobby) {
		if e.Text == "sent from my phone" {
			count++
		}
	}
	if count != 1 {
		t.Fatalf("phone message appears %d times on the network, want 1", count)
	}
}

func (v *variant) testDMPortals(t *testing.T, mgmt id.RoomID) id.RoomID {
	ctx := v.ctx()
	// Remote-initiated: carol writes to alice's account; alice is invited to a DM.
	v.net.Inject(loopnet.Event{Chat: "dm:carol", DMFor: v.account, Sender: "carol", Text: "hi alice, it's carol"})
	dm, err := v.alice.WaitInvite(ctx, func(roomID id.RoomID, inviter id.UserID) bool { return inviter == bot() })
	if err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.JoinAndWait(ctx, dm.String()); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.WaitEvent(ctx, dm, textFrom(ghost("carol"), "hi alice, it's carol")); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.SendText(ctx, dm, "hi carol"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.net.WaitEvent(ctx, "dm:carol", func(e loopnet.Event) bool {
		return e.Sender == v.account && e.DMFor == v.account && e.Text == "hi carol"
	}); err != nil {
		t.Fatal(err)
	}
	// Matrix-initiated: alice invites dan's ghost to a new room.
	resp, err := v.alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{ghost("dan")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.WaitEvent(ctx, resp.RoomID, harness.Membership(ghost("dan"), event.MembershipJoin)); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.SendText(ctx, resp.RoomID, "hello dan"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.net.WaitEvent(ctx, "dm:dan", func(e loopnet.Event) bool {
		return e.Sender == v.account && e.DMFor == v.account && e.Text == "hello dan"
	}); err != nil {
		t.Fatal(err)
	}
	v.net.Inject(loopnet.Event{Chat: "dm:dan", DMFor: v.account, Sender: "dan", Text: "hello alice"})
	if _, err = v.alice.WaitEvent(ctx, resp.RoomID, textFrom(ghost("dan"), "hello alice")); err != nil {
		t.Fatal(err)
	}
	return dm
}

// testLogout: logging out forgets the login and unlinks the chats only it could see;
// their ghosts and the bot leave those rooms.
func (v *variant) testLogout(t *testing.T, mgmt, dm id.RoomID) {
	ctx := v.ctx()
	if _, err := v.alice.SendText(ctx, mgmt, "logout loopback"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.alice.WaitEvent(ctx, mgmt, noticeFrom(bot(), "Logged out of Loopback")); err != nil {
		t.Fatal(err)
	}
	for _, who := range []id.UserID{ghost("carol"), bot()} {
		if _, err := v.alice.WaitEvent(ctx, dm, harness.Membership(who, event.MembershipLeave)); err != nil {
			t.Fatalf("%s did not leave the logged-out DM: %v", who, err)
		}
	}
	if _, err := v.alice.SendText(ctx, mgmt, "logins"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.alice.WaitEvent(ctx, mgmt, noticeFrom(bot(), "You have no logins")); err != nil {
		t.Fatal(err)
	}
}

// testPlumbing links an existing room, refusing a member without power; members
// without a login speak through the relay with the relay format; one chat can be
// plumbed into a room and have a portal at once.
func (v *variant) testPlumbing(t *testing.T, portal id.RoomID) {
	ctx := v.ctx()
	resp, err := v.dave.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Dave's room"})
	if err != nil {
		t.Fatal(err)
	}
	room := resp.RoomID
	for _, u := range []id.UserID{bot(), v.erin.UserID, v.alice.UserID} {
		if _, err = v.dave.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err = v.dave.WaitEvent(ctx, room, noticeFrom(bot(), "plumb")); err != nil {
		t.Fatal(err)
	}
	for _, u := range []interface {
		JoinAndWait(context.Context, string) (id.RoomID, error)
	}{v.erin, v.alice} {
		if _, err = u.JoinAndWait(ctx, room.String()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err = v.erin.SendText(ctx, room, "!pass plumb loopback "+v.lobby); err != nil {
		t.Fatal(err)
	}
	if _, err = v.dave.WaitEvent(ctx, room, noticeFrom(bot(), "need power")); err != nil {
		t.Fatalf("plumb without power was not refused: %v", err)
	}
	if _, err = v.dave.SendText(ctx, room, "!pass plumb loopback "+v.lobby); err != nil {
		t.Fatal(err)
	}
	if _, err = v.dave.WaitEvent(ctx, room, noticeFrom(bot(), "now linked")); err != nil {
		t.Fatal(err)
	}
	// One remote message reaches both the portal and the plumbed room.
	v.net.Inject(loopnet.Event{Chat: v.lobby, Sender: "bob", Text: "to both rooms"})
	if _, err = v.dave.WaitEvent(ctx, room, textFrom(ghost("bob"), "to both rooms")); err != nil {
		t.Fatal(err)
	}
	if _, err = v.alice.WaitEvent(ctx, portal, textFrom(ghost("bob"), "to both rooms")); err != nil {
		t.Fatal(err)
	}
	// Dave has no login and there is no relay yet: he is told why.
	if _, err = v.dave.SendText(ctx, room, "anyone there?"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.dave.WaitEvent(ctx, room, noticeFrom(bot(), "not bridged", "not logged in")); err != nil {
		t.Fatal(err)
	}
	// Alice (a bridge admin with a login) sets her login as the room's relay.
	if _, err = v.alice.SendText(ctx, room, "!pass set-relay"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.dave.WaitEvent(ctx, room, noticeFrom(bot(), "now go through", v.account)); err != nil {
		t.Fatal(err)
	}
	if err = v.dave.SetDisplayName(ctx, "Dave D"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.dave.SendText(ctx, room, "relayed hello"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.net.WaitEvent(ctx, v.lobby, netText(v.account, "Dave D: relayed hello")); err != nil {
		t.Fatalf("relayed message: %v", err)
	}
	emote := &event.MessageEventContent{MsgType: event.MsgEmote, Body: "waves"}
	if _, err = v.dave.SendMessageEvent(ctx, room, event.EventMessage, emote); err != nil {
		t.Fatal(err)
	}
	if _, err = v.net.WaitEvent(ctx, v.lobby, netText(v.account, "* Dave D waves")); err != nil {
		t.Fatalf("relayed emote: %v", err)
	}
	// Unplumbing removes the ghosts and the link, never the room.
	if _, err = v.dave.SendText(ctx, room, "!pass unplumb"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.dave.WaitEvent(ctx, room, noticeFrom(bot(), "no longer linked")); err != nil {
		t.Fatal(err)
	}
	if _, err = v.dave.WaitEvent(ctx, room, harness.Membership(ghost("bob"), event.MembershipLeave)); err != nil {
		t.Fatalf("ghost did not leave the unplumbed room: %v", err)
	}
	if _, err = v.dave.SendText(ctx, room, "after unplumb"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.dave.SendText(ctx, room, "!pass version"); err != nil {
		t.Fatal(err)
	}
	if _, err = v.dave.WaitEvent(ctx, room, noticeFrom(bot(), "Passerelle")); err != nil {
		t.Fatal(err)
	}
	for _, e := range v.net.Events(v.lobby) {
		if strings.Contains(e.Text, "after unplumb") {
			t.Fatalf("a message sent after unplumbing reached the network: %+v", e)
		}
	}
}

// redact has alice redact an event for real, then hands the redaction to the bridge as
// the homeserver would: Dendrite v0.15.2 never pushes m.room.redaction to appservices
// (element-hq/dendrite#3445), so the transaction is fed to the bridge directly.
func (v *variant) redact(t *testing.T, roomID id.RoomID, target id.EventID) {
	t.Helper()
	ctx := v.ctx()
	resp, err := v.alice.RedactEvent(ctx, roomID, target)
	if err != nil {
		t.Fatal(err)
	}
	v.pushTransaction(t, "redact-"+resp.EventID.String(), harness.RedactionEvent(v.alice.UserID, roomID, resp.EventID, target))
}

// pushTransaction sends a transaction to the bridge as the homeserver does.
func (v *variant) pushTransaction(t *testing.T, txnID string, events ...any) {
	t.Helper()
	v.pushRaw(t, txnID, map[string]any{"events": events})
}

// pushRaw sends a transaction body to the bridge as the homeserver does.
func (v *variant) pushRaw(t *testing.T, txnID string, txn map[string]any) {
	t.Helper()
	if err := harness.PushTransaction(v.ctx(), shared.port, shared.reg.ServerToken, txnID, txn); err != nil {
		t.Fatal(err)
	}
}
