package bridge

// Plumbing: linking an existing Matrix room to a remote chat. The room stays its users';
// the bridge only joins ghosts to it and never deletes it.

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

// canChangeState says whether user has the power to send state events in the room
// (the power plumbing needs: it changes what the room is).
func (br *Bridge) canChangeState(ctx context.Context, roomID id.RoomID, user id.UserID) (bool, error) {
	pl, err := br.AS.BotIntent().PowerLevels(ctx, roomID)
	if err != nil {
		return false, fmt.Errorf("reading power levels: %w", err)
	}
	return pl.GetUserLevel(user) >= pl.GetEventLevel(event.StateBridge), nil
}

func cmdPlumb(ctx context.Context, ce *CommandEvent) error {
	br := ce.Bridge
	ch, err := connectorArg(ce)
	if err != nil {
		return err
	}
	if len(ce.Args) < 2 {
		return errUsage
	}
	if rc, err := br.bridgedRoom(ctx, ce.RoomID); err != nil {
		return err
	} else if rc != nil {
		return userErrorf("this room is already linked to %s %s; `unplumb` it first", rc.ch.info.DisplayName, rc.key.ChatID)
	}
	if ok, err := br.canChangeState(ctx, ce.RoomID, ce.Sender); err != nil {
		return err
	} else if !ok {
		return userErrorf("you need power to change this room's state to plumb it")
	}
	if err = br.checkRoomEncryption(ctx, ce.RoomID); err != nil {
		return err
	}
	info, err := resolveChatArgs(ctx, ce, ch, "plumbed")
	if err != nil {
		return err
	}
	if pc, ok := ch.conn.(PlumbCheckingNetwork); ok {
		if err = pc.CheckPlumb(ctx, info.Key, ce.Sender); err != nil {
			return userErrorf("%v", err)
		}
	}
	unlock := br.chatLocks.Lock(info.Key.String())
	defer unlock()
	existing, err := br.DB.GetPortal(ctx, info.Key.Connector, string(info.Key.ChatID), string(info.Key.Receiver))
	if err != nil {
		return err
	}
	if existing == nil {
		if err = br.DB.UpsertPortal(ctx, &database.PortalRow{Connector: info.Key.Connector, ChatID: string(info.Key.ChatID),
			Receiver: string(info.Key.Receiver), Name: info.Name, Topic: info.Topic, IsDM: info.IsDM, OtherUser: string(info.OtherUser)}); err != nil {
			return err
		}
	}
	if err = br.DB.InsertRoom(ctx, &database.RoomRow{RoomID: ce.RoomID.String(), Connector: info.Key.Connector,
		ChatID: string(info.Key.ChatID), Receiver: string(info.Key.Receiver), Kind: database.RoomPlumbed, CreatedBy: ce.Sender.String()}); err != nil {
		return err
	}
	log := zerolog.Ctx(ctx).With().Object("portal", info.Key).Logger()
	log.Info().Msg("Plumbed room")
	bridgeInfo := br.bridgeInfo(ch, info, ce.Sender)
	for _, t := range []event.Type{event.StateBridge, event.StateHalfShotBridge} {
		if _, err = br.AS.BotIntent().SendStateEvent(ctx, ce.RoomID, t, bridgeStateKey(info.Key), bridgeInfo); err != nil {
			log.Debug().Err(err).Msg("Bot may not set bridge info in plumbed room")
		}
	}
	ch.joinMembers(ctx, ce.RoomID, info.Members)
	ce.Reply(ctx, "This room is now linked to %s %s.", ch.info.DisplayName, displayChat(info))
	return nil
}

func cmdUnplumb(ctx context.Context, ce *CommandEvent) error {
	br := ce.Bridge
	rc, err := br.bridgedRoom(ctx, ce.RoomID)
	if err != nil {
		return err
	} else if rc == nil || rc.room.Kind != database.RoomPlumbed {
		return userErrorf("this room is not plumbed")
	}
	if err = br.requireRoomPower(ctx, ce, "unplumb it"); err != nil {
		return err
	}
	if err = br.unlinkRoom(ctx, rc, true); err != nil {
		return err
	}
	ce.Reply(ctx, "This room is no longer linked to %s %s.", rc.ch.info.DisplayName, rc.key.ChatID)
	return nil
}

// unlinkRoom removes a room's link, its ghosts and its message mappings, never the room.
func (br *Bridge) unlinkRoom(ctx context.Context, rc *roomContext, botInRoom bool) error {
	roomID := id.RoomID(rc.room.RoomID)
	if err := br.DB.DeleteRoom(ctx, rc.room.RoomID); err != nil {
		return err
	}
	if err := br.DB.DeletePortalIfUnlinked(ctx, rc.key.Connector, string(rc.key.ChatID), string(rc.key.Receiver)); err != nil {
		return err
	}
	if !botInRoom {
		return nil
	}
	bot := br.AS.BotIntent()
	for _, t := range []event.Type{event.StateBridge, event.StateHalfShotBridge} {
		_, _ = bot.SendStateEvent(ctx, roomID, t, bridgeStateKey(rc.key), struct{}{})
	}
	members, err := bot.JoinedMembers(ctx, roomID)
	if err != nil {
		return fmt.Errorf("listing members to remove ghosts: %w", err)
	}
	for userID := range members.Joined {
		if _, _, ok := br.ghostConnector(userID); ok {
			if _, err := br.AS.Intent(userID).LeaveRoom(ctx, roomID, &mautrix.ReqLeave{Reason: "Room unplumbed"}); err != nil {
				zerolog.Ctx(ctx).Debug().Err(err).Stringer("ghost", userID).Msg("Ghost could not leave")
			}
		}
	}
	return nil
}
