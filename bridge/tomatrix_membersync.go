package bridge

// Member sync: a connector that knows a chat's whole membership (an IRC channel's NAMES
// after the bot joins) hands it over, and every linked room is made to match it. This
// is how rooms catch up with joins, leaves and op changes that happened while the
// bridge was stopped or disconnected.

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

// syncMembers joins the ghosts of info.Members to a linked room, makes this connector's
// other ghosts leave it and, in portals, sets the members' power levels.
func (br *Bridge) syncMembers(ctx context.Context, ch *connectorHost, room *database.RoomRow, info *ChatInfo) error {
	roomID := id.RoomID(room.RoomID)
	current, err := br.AS.StateStore.GetRoomJoinedOrInvitedMembers(ctx, roomID)
	if err != nil {
		return fmt.Errorf("reading room members: %w", err)
	}
	present := make(map[id.UserID]bool, len(current))
	for _, user := range current {
		present[user] = true
	}
	wanted := make(map[id.UserID]bool, len(info.Members))
	log := zerolog.Ctx(ctx).With().Stringer("room_id", roomID).Logger()
	joined, left := 0, 0
	for _, m := range info.Members {
		ghost := ch.GhostMXID(m.RemoteID)
		wanted[ghost] = true
		if present[ghost] {
			continue
		}
		intent, err := ch.ghostIntent(ctx, m.RemoteID, &GhostInfo{Name: m.Name})
		if err != nil {
			return err
		}
		if err = intent.EnsureJoined(ctx, roomID); err != nil {
			log.Warn().Err(err).Str("remote_user", string(m.RemoteID)).Msg("Member ghost could not join")
			continue
		}
		joined++
	}
	for _, user := range current {
		if wanted[user] {
			continue
		}
		if _, ours := ch.ParseGhostMXID(user); !ours {
			continue // Matrix users, the bot, other connectors' ghosts
		}
		_, err := br.AS.Intent(user).LeaveRoom(ctx, roomID, &mautrix.ReqLeave{Reason: "Not in the chat any more"})
		if err = ignoreForbidden(err); err != nil {
			log.Warn().Err(err).Stringer("ghost", user).Msg("Ghost of a departed member could not leave")
			continue
		}
		left++
	}
	if room.Kind == database.RoomPortal {
		if err = br.syncPowerLevels(ctx, ch, roomID, info); err != nil {
			log.Warn().Err(err).Msg("Syncing member power levels failed")
		}
	}
	if joined > 0 || left > 0 {
		log.Info().Int("joined", joined).Int("left", left).Msg("Room members synced with the chat")
	}
	return nil
}

// syncPowerLevels sets the listed members' power levels in a portal, in one state event
// when any differs. Members without a level (no channel prefix) go back to the default.
func (br *Bridge) syncPowerLevels(ctx context.Context, ch *connectorHost, roomID id.RoomID, info *ChatInfo) error {
	pl, err := br.AS.StateStore.GetPowerLevels(ctx, roomID)
	if err != nil || pl == nil {
		return err
	}
	changed := false
	for _, m := range info.Members {
		ghost := ch.GhostMXID(m.RemoteID)
		want := pl.UsersDefault
		if m.PowerLevel != nil {
			want = *m.PowerLevel
		}
		if pl.GetUserLevel(ghost) != want {
			pl.SetUserLevel(ghost, want)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	_, err = br.AS.BotIntent().SetPowerLevels(ctx, roomID, pl)
	return err
}
