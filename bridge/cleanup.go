package bridge

// The cleanup of what nobody uses: ghosts no chat needs any more and direct-chat rooms
// every Matrix user left, so a flood of one-off senders does not stay forever.

import (
	"context"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

// cleanupBatch bounds one pass; the next hour's pass takes the rest.
const cleanupBatch = 500

// cleanupUnused removes direct-chat rooms with no Matrix user joined and no message
// for bridge.limits.cleanup_after, then ghosts that sent nothing for as long and are in
// no room.
func (br *Bridge) cleanupUnused(ctx context.Context, now time.Time) {
	after := br.Config.Bridge.Limits.CleanupAfter.Std()
	if after <= 0 {
		return
	}
	if err := br.DB.StampGhosts(ctx, now); err != nil {
		br.Log.Warn().Err(err).Msg("Cleanup: stamping ghosts failed")
		return
	}
	cutoff := now.Add(-after)
	rooms, err := br.DB.QuietDMRooms(ctx, cutoff, cleanupBatch)
	if err != nil {
		br.Log.Warn().Err(err).Msg("Cleanup: listing quiet direct chats failed")
	}
	closed := 0
	for _, room := range rooms {
		if br.closeEmptyDM(ctx, room) {
			closed++
		}
	}
	ghosts, err := br.DB.UnusedGhosts(ctx, cutoff, cleanupBatch)
	if err != nil {
		br.Log.Warn().Err(err).Msg("Cleanup: listing unused ghosts failed")
	}
	for _, g := range ghosts {
		br.forgetGhost(ctx, g)
	}
	if closed > 0 || len(ghosts) > 0 {
		br.Log.Info().Int("rooms", closed).Int("ghosts", len(ghosts)).Msg("Cleaned up unused direct chats and ghosts")
	}
}

// closeEmptyDM takes the bridge out of a direct-chat room no Matrix user is joined to,
// and forgets the chat; a new message from the contact opens a new room.
func (br *Bridge) closeEmptyDM(ctx context.Context, room *database.RoomRow) bool {
	roomID := id.RoomID(room.RoomID)
	log := br.Log.With().Stringer("room_id", roomID).Str("connector", room.Connector).Logger()
	members, err := br.AS.StateStore.(*stateStore).JoinedMembers(ctx, roomID)
	if err != nil {
		log.Warn().Err(err).Msg("Cleanup: reading the room's members failed")
		return false
	}
	var ours []id.UserID
	for mxid := range members {
		if !br.isBridgeUser(mxid) {
			return false // someone still reads it
		}
		ours = append(ours, mxid)
	}
	reason := &mautrix.ReqLeave{Reason: "Nobody has used this chat for a long time"}
	for _, mxid := range ours {
		if mxid == br.BotMXID() {
			continue
		}
		if _, err = br.AS.Intent(mxid).LeaveRoom(ctx, roomID, reason); err != nil {
			log.Debug().Err(err).Str("ghost", mxid.String()).Msg("Cleanup: a ghost could not leave")
		}
	}
	if _, err = br.AS.BotIntent().LeaveRoom(ctx, roomID, reason); err != nil {
		log.Debug().Err(err).Msg("Cleanup: the bot could not leave")
	}
	if err = br.DB.DeleteRoom(ctx, room.RoomID); err != nil {
		log.Warn().Err(err).Msg("Cleanup: forgetting the room failed")
		return false
	}
	if err = br.DB.DeletePortalIfUnlinked(ctx, room.Connector, room.ChatID, room.Receiver); err != nil {
		log.Warn().Err(err).Msg("Cleanup: forgetting the chat failed")
	}
	log.Debug().Msg("Cleanup: closed an empty direct chat")
	return true
}

// forgetGhost clears a ghost's public profile (the remote user's name and picture are
// not kept once nothing needs them) and forgets it.
func (br *Bridge) forgetGhost(ctx context.Context, g database.GhostRow) {
	log := br.Log.With().Str("ghost", g.MXID).Logger()
	intent := br.AS.Intent(id.UserID(g.MXID))
	if err := intent.SetDisplayName(ctx, ""); err != nil {
		log.Debug().Err(err).Msg("Cleanup: clearing the ghost's name failed")
	}
	if err := intent.SetAvatarURL(ctx, id.ContentURI{}); err != nil {
		log.Debug().Err(err).Msg("Cleanup: clearing the ghost's picture failed")
	}
	if err := br.DB.DeleteGhost(ctx, g.Connector, g.RemoteID); err != nil {
		log.Warn().Err(err).Msg("Cleanup: forgetting the ghost failed")
	}
}
