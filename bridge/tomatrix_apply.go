package bridge

// Network → Matrix, per room: one handler per kind of remote event, each applying it to
// one linked room as the sender's intent (ghost, double puppet or bot).

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

// remoteApply is one remote event on its way into one linked room.
type remoteApply struct {
	br     *Bridge
	ch     *connectorHost
	evt    *RemoteEvent
	room   *database.RoomRow
	roomID id.RoomID
	intent *appservice.IntentAPI
	// seq is the event's queue position, part of its idempotent transaction IDs.
	seq int64
}

// send posts an event into the room as the sender, idempotently across retries.
func (a *remoteApply) send(ctx context.Context, evtType event.Type, content *event.Content) (id.EventID, error) {
	return a.br.sendEvent(ctx, a.intent, a.roomID, evtType, content, remoteTxnID(a.evt, a.roomID, a.seq), a.evt.Timestamp)
}

// target finds the room's event for a remote message ID (nil when unknown).
func (a *remoteApply) target(ctx context.Context, remoteID RemoteMessageID) (*database.MessageRow, error) {
	if remoteID == "" {
		return nil, nil
	}
	key := a.evt.Chat
	return a.br.DB.MessageByRemote(ctx, a.room.RoomID, key.Connector, string(key.ChatID), string(key.Receiver), string(remoteID))
}

// message posts a remote message, once per room, and maps it.
func (a *remoteApply) message(ctx context.Context) error {
	br, ch, evt, room, intent, key := a.br, a.ch, a.evt, a.room, a.intent, a.evt.Chat
	if evt.Content == nil {
		return fmt.Errorf("%w: message without content", errPermanent)
	}
	if existing, err := a.target(ctx, evt.ID); err != nil {
		return err
	} else if existing != nil && evt.ID != "" {
		return nil // already bridged into this room (a resumed event)
	}
	content, err := br.matrixContent(ctx, ch, a.roomID, evt.Content, func(remoteID string) id.EventID {
		if row, _ := a.target(ctx, RemoteMessageID(remoteID)); row != nil {
			return id.EventID(row.EventID)
		}
		return ""
	})
	if err != nil {
		return err
	}
	if evt.ID != "" {
		content.Raw = map[string]any{remoteIDKey: evt.ID}
	}
	evtType := event.EventMessage
	if parsed := content.Parsed.(*event.MessageEventContent); parsed.MsgType == MsgSticker {
		evtType, parsed.MsgType = event.EventSticker, ""
	}
	eventID, err := a.send(ctx, evtType, content)
	if err != nil {
		return err
	}
	if evt.ID == "" {
		return nil
	}
	return br.DB.InsertMessages(ctx, &database.MessageRow{RoomID: room.RoomID, EventID: eventID.String(),
		Connector: key.Connector, ChatID: string(key.ChatID), Receiver: string(key.Receiver), RemoteID: string(evt.ID),
		SenderMXID: intent.UserID.String(), CreatedAt: nonZeroTime(evt.Timestamp)})
}

// edit replaces a bridged message, when its sender edited it.
func (a *remoteApply) edit(ctx context.Context) error {
	br, ch, evt, intent := a.br, a.ch, a.evt, a.intent
	target, err := a.target(ctx, evt.TargetID)
	if err != nil {
		return err
	} else if target == nil || evt.Content == nil {
		return targetNotYetKnown(ctx, evt)
	}
	if !br.ownMessage(ctx, evt, target, intent) {
		zerolog.Ctx(ctx).Warn().Str("target_sender", target.SenderMXID).Msg("Dropping an edit of someone else's message")
		return nil
	}
	newContent, err := br.matrixContent(ctx, ch, a.roomID, evt.Content, nil)
	if err != nil {
		return err
	}
	edit := newContent.Parsed.(*event.MessageEventContent)
	edit.SetEdit(id.EventID(target.EventID))
	_, err = a.send(ctx, event.EventMessage, &event.Content{Parsed: edit})
	return err
}

// redaction deletes a bridged message, when its sender or a moderator deleted it.
func (a *remoteApply) redaction(ctx context.Context) error {
	br, evt, room, roomID, intent, seq := a.br, a.evt, a.room, a.roomID, a.intent, a.seq
	target, err := a.target(ctx, evt.TargetID)
	if err != nil {
		return err
	} else if target == nil {
		return targetNotYetKnown(ctx, evt)
	}
	if evt.Sender.RemoteID != "" && !evt.Moderator && !br.ownMessage(ctx, evt, target, intent) {
		zerolog.Ctx(ctx).Warn().Str("target_sender", target.SenderMXID).Msg("Dropping a deletion of someone else's message")
		return nil
	}
	if _, err = intent.RedactEvent(ctx, roomID, id.EventID(target.EventID), mautrix.ReqRedact{TxnID: remoteTxnID(evt, roomID, seq)}); err != nil {
		// The sender may lack power to redact another's event; the bot has it.
		if _, err2 := br.AS.BotIntent().RedactEvent(ctx, roomID, id.EventID(target.EventID)); err2 != nil {
			return fmt.Errorf("redacting: %w", err)
		}
	}
	return br.DB.DeleteMessagesByEvent(ctx, room.RoomID, target.EventID)
}

// reaction adds a reaction, replacing the sender's earlier ones where the network allows one.
func (a *remoteApply) reaction(ctx context.Context) error {
	br, evt, room, intent, seq, key := a.br, a.evt, a.room, a.intent, a.seq, a.evt.Chat
	target, err := a.target(ctx, evt.TargetID)
	if err != nil {
		return err
	} else if target == nil {
		return targetNotYetKnown(ctx, evt)
	}
	senderKey := "remote:" + string(evt.Sender.RemoteID)
	if existing, err := br.DB.ReactionBy(ctx, room.RoomID, string(evt.TargetID), senderKey, evt.Emoji); err != nil {
		return err
	} else if existing != nil {
		return nil
	}
	if evt.ReplaceReactions {
		if err := br.removeReactions(ctx, room, evt, intent, seq, senderKey); err != nil {
			return err
		}
	}
	content := &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation,
		EventID: id.EventID(target.EventID), Key: evt.Emoji}}
	eventID, err := a.send(ctx, event.EventReaction, &event.Content{Parsed: content})
	if err != nil {
		return err
	}
	remoteID := evt.ID
	if remoteID == "" {
		remoteID = RemoteMessageID("reaction:" + string(evt.TargetID) + ":" + string(evt.Sender.RemoteID) + ":" + evt.Emoji)
	}
	return br.DB.InsertMessages(ctx, &database.MessageRow{RoomID: room.RoomID, EventID: eventID.String(),
		Connector: key.Connector, ChatID: string(key.ChatID), Receiver: string(key.Receiver), RemoteID: string(remoteID),
		Kind: database.KindReaction, SenderMXID: senderKey, TargetRemoteID: string(evt.TargetID), Emoji: evt.Emoji})
}

// unreaction takes back one reaction, or all of the sender's on the target.
func (a *remoteApply) unreaction(ctx context.Context) error {
	br, evt, room, roomID, intent, seq := a.br, a.evt, a.room, a.roomID, a.intent, a.seq
	if evt.Emoji == "" {
		return br.removeReactions(ctx, room, evt, intent, seq, "remote:"+string(evt.Sender.RemoteID))
	}
	row, err := br.DB.ReactionBy(ctx, room.RoomID, string(evt.TargetID), "remote:"+string(evt.Sender.RemoteID), evt.Emoji)
	if err != nil || row == nil {
		return err
	}
	if _, err = intent.RedactEvent(ctx, roomID, id.EventID(row.EventID), mautrix.ReqRedact{TxnID: remoteTxnID(evt, roomID, seq)}); err != nil {
		return fmt.Errorf("redacting reaction: %w", err)
	}
	return br.DB.DeleteMessagesByEvent(ctx, room.RoomID, row.EventID)
}

// typing shows the sender typing.
func (a *remoteApply) typing(ctx context.Context) error {
	evt, roomID, intent := a.evt, a.roomID, a.intent
	_, err := intent.UserTyping(ctx, roomID, evt.Typing, 20*time.Second)
	return ignoreForbidden(err)
}

// receipt marks the room read up to a message as the sender.
func (a *remoteApply) receipt(ctx context.Context) error {
	br, evt, roomID, intent := a.br, a.evt, a.roomID, a.intent
	target, err := a.target(ctx, evt.TargetID)
	if err != nil {
		return err
	} else if target == nil {
		return targetNotYetKnown(ctx, evt)
	}
	if intent.IsCustomPuppet {
		// The homeserver will echo this receipt back as the user's own: remember it
		// so it is not sent to the network again.
		br.ownReceipts.Add(intent.UserID.String() + "|" + target.EventID)
	}
	return ignoreForbidden(intent.MarkRead(ctx, roomID, id.EventID(target.EventID)))
}

// join joins the sender to the room.
func (a *remoteApply) join(ctx context.Context) error {
	roomID, intent := a.roomID, a.intent
	return intent.EnsureJoined(ctx, roomID)
}

// leave makes the sender leave, unless they are the bot or a real Matrix user.
func (a *remoteApply) leave(ctx context.Context) error {
	br, evt, roomID, intent := a.br, a.evt, a.roomID, a.intent
	if intent.IsCustomPuppet || intent.UserID == br.BotMXID() {
		return nil
	}
	_, err := intent.LeaveRoom(ctx, roomID, &mautrix.ReqLeave{Reason: evt.Reason})
	return ignoreForbidden(err)
}

// kick kicks the target's ghost as the bot.
func (a *remoteApply) kick(ctx context.Context) error {
	br, ch, evt, roomID := a.br, a.ch, a.evt, a.roomID
	target := ch.GhostMXID(evt.TargetUser)
	_, err := br.AS.BotIntent().KickUser(ctx, roomID, &mautrix.ReqKickUser{UserID: target, Reason: evt.Reason})
	return ignoreForbidden(err)
}

// chatInfo renames a portal and sets its topic and picture; plumbed rooms keep theirs.
func (a *remoteApply) chatInfo(ctx context.Context) error {
	br, evt, room, roomID := a.br, a.evt, a.room, a.roomID
	if evt.ChatInfo == nil {
		return nil
	}
	// Plumbed rooms belong to their users: the bridge does not rename them.
	if room.Kind != database.RoomPortal {
		return nil
	}
	bot := br.AS.BotIntent()
	if !evt.ChatInfo.AvatarURL.IsEmpty() {
		if _, err := bot.SendStateEvent(ctx, roomID, event.StateRoomAvatar, "",
			&event.RoomAvatarEventContent{URL: evt.ChatInfo.AvatarURL.CUString()}); err != nil {
			return fmt.Errorf("setting room avatar: %w", err)
		}
	}
	if evt.ChatInfo.Name != "" {
		if _, err := bot.SetRoomName(ctx, roomID, evt.ChatInfo.Name); err != nil {
			return fmt.Errorf("setting room name: %w", err)
		}
	}
	if _, err := bot.SetRoomTopic(ctx, roomID, evt.ChatInfo.Topic); err != nil {
		return fmt.Errorf("setting room topic: %w", err)
	}
	return nil
}

// powerLevel sets a member's power level in a portal; plumbed rooms keep theirs.
func (a *remoteApply) powerLevel(ctx context.Context) error {
	br, ch, evt, room, roomID := a.br, a.ch, a.evt, a.room, a.roomID
	if evt.PowerLevel == nil || (evt.TargetUser == "" && evt.TargetMXID == "") || room.Kind != database.RoomPortal {
		return nil // plumbed rooms keep their own power levels
	}
	target := evt.TargetMXID
	if target == "" {
		target = ch.GhostMXID(evt.TargetUser)
	}
	if _, err := br.AS.BotIntent().SetPowerLevel(ctx, roomID, target, *evt.PowerLevel); err != nil {
		return fmt.Errorf("setting power level: %w", err)
	}
	return nil
}

// profile updates the sender's ghost profile.
func (a *remoteApply) profile(ctx context.Context) error {
	ch, evt := a.ch, a.evt
	if evt.Sender.RemoteID == "" {
		return nil
	}
	return ch.ensureGhostFor(ctx, evt.Sender.RemoteID, evt.Sender.ghostInfo(), ch.br.senderBudget(evt))
}
