package bridge

// Membership: the bot joining rooms it is invited to (management rooms, rooms about to
// be plumbed), ghosts invited to new rooms (DMs started from Matrix), and real users'
// joins and leaves mirrored to the network.

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

func (br *Bridge) handleMatrixMember(ctx context.Context, evt *event.Event) error {
	content := evt.Content.AsMember()
	target := id.UserID(evt.GetStateKey())
	log := zerolog.Ctx(ctx).With().Stringer("target", target).Str("membership", string(content.Membership)).Logger()
	ctx = log.WithContext(ctx)
	if target == br.BotMXID() {
		return br.handleBotMembership(ctx, evt, content)
	}
	if ch, remote, ok := br.ghostConnector(target); ok {
		if content.Membership == event.MembershipInvite && !br.isBridgeUser(evt.Sender) {
			return br.handleGhostInvite(ctx, evt, ch, remote, content)
		}
		if content.Membership == event.MembershipLeave && evt.Sender != target && !br.isBridgeUser(evt.Sender) {
			return br.mirrorMembership(ctx, evt, target, remote, content)
		}
		return nil
	}
	if br.isBridgeUser(evt.Sender) || br.loops.ShouldIgnore(evt, br.isBridgeUser) {
		return nil
	}
	if content.Membership == event.MembershipLeave || content.Membership == event.MembershipBan {
		if owner, err := br.DB.IsManagementRoom(ctx, evt.RoomID.String()); err == nil && owner == target.String() {
			return br.DB.SetManagementRoom(ctx, owner, "")
		}
	}
	switch content.Membership {
	case event.MembershipJoin, event.MembershipLeave, event.MembershipBan:
		if evt.Unsigned.PrevContent != nil {
			_ = evt.Unsigned.PrevContent.ParseRaw(event.StateMember)
			if prev := evt.Unsigned.PrevContent.AsMember(); prev.Membership == content.Membership {
				return nil // a profile change, not a membership change
			}
		}
		return br.mirrorMembership(ctx, evt, target, "", content)
	}
	return nil
}

// mirrorMembership sends a real user's join/leave, or a kick of a ghost, to the network
// through the acting user's own session.
func (br *Bridge) mirrorMembership(ctx context.Context, evt *event.Event, target id.UserID, targetRemote string, content *event.MemberEventContent) error {
	rc, err := br.bridgedRoom(ctx, evt.RoomID)
	if err != nil || rc == nil {
		return err
	}
	actor := evt.Sender
	rt, err := br.senderSession(ctx, rc, actor)
	if err != nil || rt.relayed {
		return nil // nobody to speak for them; membership is not relayed
	}
	ms, ok := rt.sess.(MembershipSession)
	if !ok {
		return nil
	}
	return ms.SendMembership(ctx, &MatrixMembership{Chat: rc.key, RoomID: evt.RoomID,
		Sender: br.matrixSender(ctx, evt.RoomID, actor), Target: target, TargetRemote: RemoteUserID(targetRemote),
		Membership: content.Membership, Reason: content.Reason})
}

func (br *Bridge) handleBotMembership(ctx context.Context, evt *event.Event, content *event.MemberEventContent) error {
	bot := br.AS.BotIntent()
	switch content.Membership {
	case event.MembershipInvite:
		if br.isBridgeUser(evt.Sender) {
			return nil // our own invites are followed by an explicit join
		}
		level := br.perms.Level(evt.Sender)
		if level < LevelUser {
			_, err := bot.LeaveRoom(ctx, evt.RoomID, &mautrix.ReqLeave{Reason: "You are not allowed to use this bridge"})
			return ignoreForbidden(err)
		}
		if _, err := bot.JoinRoomByID(ctx, evt.RoomID); err != nil {
			return fmt.Errorf("joining room after invite: %w", err)
		}
		// What happened before the bot was in (the room turned encrypted, members
		// joined) is not pushed to it: read it now, before the first answer.
		br.learnRoom(ctx, evt.RoomID)
		if br.cannotReadRoom(ctx, evt.RoomID) {
			return nil
		}
		if rc, err := br.bridgedRoom(ctx, evt.RoomID); err != nil || rc != nil {
			return err
		}
		var err error
		isDM := content.IsDirect
		if !isDM {
			isDM, err = br.looksLikeDM(ctx, evt.RoomID, evt.Sender)
			if err != nil {
				return err
			}
		}
		if isDM {
			if err = br.DB.SetManagementRoom(ctx, evt.Sender.String(), evt.RoomID.String()); err != nil {
				return err
			}
			_, err = br.noticeAs(ctx, bot, evt.RoomID, fmt.Sprintf("Hello! This is your management room for %s: commands here need no prefix. Send `help` to see what you can do.",
				br.Config.AppService.Bot.Displayname))
			return err
		}
		_, err = br.noticeAs(ctx, bot, evt.RoomID, fmt.Sprintf("Hello! To link this room to a remote chat, someone with power here can send `%s plumb <network> <chat>`.", br.Config.Bridge.CommandPrefix))
		return err
	case event.MembershipLeave, event.MembershipBan:
		if owner, err := br.DB.IsManagementRoom(ctx, evt.RoomID.String()); err == nil && owner != "" {
			return br.DB.SetManagementRoom(ctx, owner, "")
		}
		rc, err := br.bridgedRoom(ctx, evt.RoomID)
		if err != nil || rc == nil {
			return err
		}
		if rc.room.Kind == database.RoomPlumbed {
			// Kicking the bot out of a plumbed room is how its users unplumb without us.
			zerolog.Ctx(ctx).Info().Msg("Bot removed from plumbed room, unlinking it")
			return br.unlinkRoom(ctx, rc, false)
		}
	}
	return nil
}

// looksLikeDM says whether a room the bot was invited to without is_direct is still a
// one-to-one chat with the inviter: unnamed, and nobody else joined or invited.
func (br *Bridge) looksLikeDM(ctx context.Context, roomID id.RoomID, inviter id.UserID) (bool, error) {
	bot := br.AS.BotIntent()
	var name event.RoomNameEventContent
	if err := bot.StateEvent(ctx, roomID, event.StateRoomName, "", &name); err == nil && name.Name != "" {
		return false, nil
	}
	members, err := bot.Members(ctx, roomID)
	if err != nil {
		return false, fmt.Errorf("listing members: %w", err)
	}
	for _, m := range members.Chunk {
		_ = m.Content.ParseRaw(event.StateMember)
		target := id.UserID(m.GetStateKey())
		ms := m.Content.AsMember().Membership
		if target != inviter && target != br.BotMXID() && (ms == event.MembershipJoin || ms == event.MembershipInvite) {
			return false, nil
		}
	}
	return true, nil
}

// handleGhostInvite opens a DM portal when a Matrix user invites a ghost to a room.
func (br *Bridge) handleGhostInvite(ctx context.Context, evt *event.Event, ch *connectorHost, remote string, content *event.MemberEventContent) error {
	ghost := br.AS.Intent(id.UserID(evt.GetStateKey()))
	rc, err := br.bridgedRoom(ctx, evt.RoomID)
	if err != nil {
		return err
	}
	if rc != nil {
		return ghost.EnsureJoined(ctx, evt.RoomID)
	}
	reject := func(reason string) error {
		_, err := ghost.LeaveRoom(ctx, evt.RoomID, &mautrix.ReqLeave{Reason: reason})
		return ignoreForbidden(err)
	}
	if br.perms.Level(evt.Sender) < LevelUser {
		return reject("You are not allowed to use this bridge")
	}
	resolver, ok := ch.conn.(DMNetwork)
	if !ok {
		return reject(ch.info.DisplayName + " does not support direct chats")
	}
	logins, err := br.DB.LoginsOfUser(ctx, evt.Sender.String())
	if err != nil {
		return err
	}
	var info *ChatInfo
	tried := false
	for _, l := range logins {
		if l.Connector != ch.info.Name || br.session(l.Connector, LoginID(l.LoginID)) == nil {
			continue
		}
		tried = true
		if info, err = resolver.DMChat(ctx, loginFromRow(l), remote); err == nil {
			break
		}
	}
	if !tried {
		if err = ghost.EnsureRegistered(ctx); err == nil {
			if _, err = ghost.JoinRoomByID(ctx, evt.RoomID); err == nil {
				_, _ = br.noticeAs(ctx, ghost, evt.RoomID, fmt.Sprintf("You are not logged in to %s; send `login %s` to %s first.", ch.info.DisplayName, ch.info.Name, br.BotMXID()))
			}
		}
		return reject("not logged in")
	}
	if err != nil {
		return reject(fmt.Sprintf("Could not open a chat: %v", err))
	}
	info.Key.Connector = ch.info.Name
	unlock := br.chatLocks.Lock(info.Key.String())
	defer unlock()
	if err = ch.ensureGhost(ctx, RemoteUserID(remote), nameInfo(info.Name)); err != nil {
		return err
	}
	if _, err = ghost.JoinRoomByID(ctx, evt.RoomID); err != nil {
		return fmt.Errorf("ghost joining DM: %w", err)
	}
	rooms, err := br.DB.RoomsForChat(ctx, info.Key.Connector, string(info.Key.ChatID), string(info.Key.Receiver))
	if err != nil {
		return err
	}
	for _, r := range rooms {
		if r.Kind == database.RoomPortal {
			_, _ = br.noticeAs(ctx, ghost, evt.RoomID, fmt.Sprintf("You already have a chat with me: https://matrix.to/#/%s", r.RoomID))
			return reject("duplicate chat")
		}
	}
	info.IsDM = true
	info.OtherUser = RemoteUserID(remote)
	if err = br.DB.UpsertPortal(ctx, &database.PortalRow{Connector: info.Key.Connector, ChatID: string(info.Key.ChatID),
		Receiver: string(info.Key.Receiver), Name: info.Name, IsDM: true, OtherUser: remote}); err != nil {
		return err
	}
	if err = br.DB.InsertRoom(ctx, &database.RoomRow{RoomID: evt.RoomID.String(), Connector: info.Key.Connector,
		ChatID: string(info.Key.ChatID), Receiver: string(info.Key.Receiver), Kind: database.RoomPortal, CreatedBy: evt.Sender.String()}); err != nil {
		return err
	}
	// The bot joins too, so it can redact and report statuses; failing that is not fatal.
	if _, err = ghost.InviteUser(ctx, evt.RoomID, &mautrix.ReqInviteUser{UserID: br.BotMXID()}); err == nil {
		_, _ = br.AS.BotIntent().JoinRoomByID(ctx, evt.RoomID)
	}
	zerolog.Ctx(ctx).Info().Object("portal", info.Key).Msg("Opened DM portal from Matrix invite")
	return nil
}
