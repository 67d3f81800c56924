package whatsapp

import (
	"context"
	"sort"

	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
)

// handleHistorySync bridges the recent history the phone sends after pairing: each
// chat's last history_count messages go into its portal, oldest first, with their
// original timestamps. Messages already bridged are skipped by the core.
func (s *session) handleHistorySync(ctx context.Context, e *events.HistorySync) {
	switch e.Data.GetSyncType() {
	case waHistorySync.HistorySync_INITIAL_BOOTSTRAP, waHistorySync.HistorySync_RECENT,
		waHistorySync.HistorySync_FULL, waHistorySync.HistorySync_ON_DEMAND:
	default:
		return // push names and status updates; whatsmeow stores the names itself
	}
	limit := *s.c.cfg.HistoryCount
	if limit == 0 {
		return
	}
	for _, conv := range e.Data.GetConversations() {
		chat, err := types.ParseJID(conv.GetID())
		if err != nil || s.skipChat(chat) {
			continue
		}
		log := s.log.With().Str("chat_id", chat.String()).Logger()
		var msgs []*events.Message
		for _, hm := range conv.GetMessages() {
			evt, err := s.client.ParseWebMessage(chat, hm.GetMessage())
			if err != nil {
				log.Debug().Err(err).Msg("Skipping unparsable history message")
				continue
			}
			msgs = append(msgs, evt)
		}
		sort.SliceStable(msgs, func(i, j int) bool { return msgs[i].Info.Timestamp.Before(msgs[j].Info.Timestamp) })
		if len(msgs) > limit {
			msgs = msgs[len(msgs)-limit:]
		}
		if exp := conv.GetEphemeralExpiration(); exp > 0 {
			if err := s.c.timers.setChatTimer(ctx, s.portalKey(ctx, chat), exp); err != nil {
				log.Warn().Err(err).Msg("Saving the disappearing-message timer failed")
			}
		}
		log.Debug().Int("messages", len(msgs)).Msg("Backfilling chat from history sync")
		for _, evt := range msgs {
			s.handleMessage(ctx, evt, true)
		}
	}
}
