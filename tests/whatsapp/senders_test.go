package whatsapp

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/types"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/whatsapp/fakewa"
)

// TestSendersAfterRestart: WhatsApp names a message by its chat, its ID and its sender,
// and the sender is only learnt when the message arrives. After the bridge restarts
// (killed, then stopped cleanly) removing a reaction, replying, and reading a group
// chat on Matrix must still name the contact as WhatsApp knows them, in the form
// WhatsApp used (a hidden ID in a LID-addressed group).
func TestSendersAfterRestart(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			v := newVariant(t, "wasenders", db, 0)
			conn := v.testQRLogin(t)
			ctx := v.ctx()
			group := types.NewJID("120363000000077"+v.name[:1], types.GroupServer)
			bob, dan := userJID(v.bobPhone), userJID(v.danPhone)
			danLID := types.NewJID("4455"+v.danPhone, types.HiddenUserServer)
			v.wa.SetGroup(&types.GroupInfo{JID: group, GroupName: types.GroupName{Name: "Senders " + v.name},
				Participants: []types.GroupParticipant{{JID: userJID(v.alicePhone)}, {JID: bob}, {JID: dan, LID: danLID}}})

			// bob writes from his phone number; dan from his hidden ID, as in a
			// LID-addressed group, with his number alongside.
			v.dispatch(conn, message(group, bob, "SENDBOB1", "Bob", text("bob in the group")))
			room, bobEvt, err := v.alice.WaitAnyEvent(ctx, func(_ id.RoomID, e *event.Event) bool {
				return e.Type == event.EventMessage && e.Sender == ghost(v.bobPhone) && e.Content.AsMessage().Body == "bob in the group"
			})
			if err != nil {
				t.Fatal(err)
			}
			fromDan := message(group, danLID, "SENDDAN1", "Dan", text("dan in the group"))
			fromDan.Info.SenderAlt = dan
			fromDan.Info.AddressingMode = types.AddressingModeLID
			v.dispatch(conn, fromDan)
			danEvt := v.waitIn(room, "dan's message", msgFrom(ghost(v.danPhone), event.MsgText, "dan in the group"))

			cursor := v.wa.CallCount()
			reaction, err := v.alice.SendReaction(ctx, room, bobEvt.ID, "👀")
			if err != nil {
				t.Fatal(err)
			}
			call := v.sent(&cursor, sendTo(group))
			if key := call.Message.GetReactionMessage().GetKey(); key.GetID() != "SENDBOB1" || key.GetFromMe() || key.GetParticipant() != bob.String() {
				t.Fatalf("reaction before the restart sent as %v", call.Message)
			}

			// Killed: nothing the bridge kept only in memory survives.
			conn = v.restart(t, conn, true)
			cursor = v.wa.CallCount()
			v.redact(room, reaction.EventID)
			call = v.sent(&cursor, sendTo(group))
			rm := call.Message.GetReactionMessage()
			if key := rm.GetKey(); rm == nil || rm.GetText() != "" || key.GetID() != "SENDBOB1" || key.GetFromMe() || key.GetParticipant() != bob.String() {
				t.Errorf("reaction removal after a restart sent as %v; want a removal keyed on bob's message (from_me false, participant %s)", call.Message, bob)
			}
			reply := &event.MessageEventContent{MsgType: event.MsgText, Body: "answering dan"}
			reply.SetReply(danEvt)
			if _, err = v.alice.SendMessageEvent(ctx, room, event.EventMessage, reply); err != nil {
				t.Fatal(err)
			}
			call = v.sent(&cursor, sendTo(group))
			if ci := call.Message.GetExtendedTextMessage().GetContextInfo(); ci.GetStanzaID() != "SENDDAN1" || ci.GetParticipant() != danLID.String() {
				t.Errorf("reply after a restart sent as %v; want it to quote SENDDAN1 from %s, as WhatsApp sent it", call.Message, danLID)
			}

			// Stopped cleanly this time: the read receipt still names the sender.
			conn = v.restart(t, conn, false)
			cursor = v.wa.CallCount()
			v.push("senders-receipt-"+v.name, map[string]any{"ephemeral": []any{map[string]any{"type": "m.receipt", "room_id": room,
				"content": map[string]any{bobEvt.ID.String(): map[string]any{"m.read": map[string]any{v.alice.UserID.String(): map[string]any{"ts": time.Now().UnixMilli()}}}}}}})
			rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			receipt, _, err := v.wa.WaitCall(rctx, cursor, func(c *fakewa.Call) bool { return c.Op == fakewa.CallMarkRead && c.Chat == group })
			if err != nil {
				t.Fatalf("no read receipt reached WhatsApp for the group after a restart: %v", err)
			}
			if len(receipt.IDs) != 1 || receipt.IDs[0] != "SENDBOB1" || receipt.Sender != bob {
				t.Errorf("read receipt after a restart: IDs %v from %s; want SENDBOB1 from %s", receipt.IDs, receipt.Sender, bob)
			}
		})
	}
}

// restart kills (SIGKILL) or stops (SIGTERM) the bridge, starts it again and returns
// the login's new connection once the session is back.
func (v *variant) restart(t *testing.T, conn *fakewa.Conn, kill bool) *fakewa.Conn {
	t.Helper()
	if kill {
		v.bridge.Kill()
	} else {
		v.bridge.Stop()
	}
	v.start()
	next, err := v.wa.WaitConn(v.ctx(), func(c *fakewa.Conn) bool { return c != conn && fakewa.DeviceOf(v.alicePhone)(c) })
	if err != nil {
		t.Fatalf("the session did not come back after the restart: %v", err)
	}
	v.waitLoginConnected(t)
	return next
}

// waitLoginConnected asks `logins` until a new answer says the login is connected
// (earlier answers in the management room must not count).
func (v *variant) waitLoginConnected(t *testing.T) {
	t.Helper()
	ctx := v.ctx()
	for {
		if _, err := v.alice.SendText(ctx, v.mgmt, "logins"); err != nil {
			t.Fatal(err)
		}
		evt, err := v.alice.WaitEvent(ctx, v.mgmt, func(e *event.Event) bool {
			return noticeFrom(bot(), "+"+v.alicePhone)(e) && !v.seen(e.ID)
		})
		if err != nil {
			t.Fatalf("waiting for the login after the restart: %v", err)
		}
		v.markSeen(evt.ID)
		if strings.Contains(evt.Content.AsMessage().Body, "— connected") {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the login is not connected after the restart: %s", evt.Content.AsMessage().Body)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
