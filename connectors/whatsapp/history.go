package whatsapp

import (
	"context"
	"sort"

	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
)

// handleHistorySync bridges the recent history the phone sends after pairing: each
// chat's last history_count messages go into its portal, oldest first, with their
// original timestamps. Messages already bridged are skipped by the core.
func (s *session) handleHistorySync(ctx context.Context, q *queuer, e *events.HistorySync) {
	switch e.Data.GetSyncType() {
	case waHistorySync.HistorySync_INITIAL_BOOTSTRAP, waHistorySync.HistorySync_RECENT:
	default:
		// Older history (FULL, ON_DEMAND), push names and status updates: the recent
		// messages are what a new portal shows.
		return
	}
	limit := *s.c.cfg.HistoryCount
	if limit == 0 {
		return
	}
	// whatsmeow stores the blob's LID↔phone mappings in the background; storing them
	// first keeps history from making hidden-ID ghosts for known contacts.
	if dev := s.client.Device(); dev != nil && dev.LIDs != nil {
		var mappings []store.LIDMapping
		for _, m := range e.Data.GetPhoneNumberToLidMappings() {
			lid, err1 := types.ParseJID(m.GetLidJID())
			pn, err2 := types.ParseJID(m.GetPnJID())
			if err1 == nil && err2 == nil {
				mappings = append(mappings, store.LIDMapping{LID: lid.ToNonAD(), PN: pn.ToNonAD()})
			}
		}
		if len(mappings) > 0 {
			if err := dev.LIDs.PutManyLIDMappings(ctx, mappings); err != nil {
				s.log.Warn().Err(err).Msg("Storing the history's LID mappings failed")
			}
		}
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
		// A chat may come back in a later blob with older messages: the count is per
		// chat and per run, and the first (newest) messages win.
		room := limit - s.backfilled(chat, 0)
		if room <= 0 {
			continue
		}
		if len(msgs) > room {
			msgs = msgs[len(msgs)-room:]
		}
		s.backfilled(chat, len(msgs))
		if exp := conv.GetEphemeralExpiration(); exp > 0 {
			if err := s.c.timers.setChatTimer(ctx, s.portalKey(ctx, chat), exp); err != nil {
				log.Warn().Err(err).Msg("Saving the disappearing-message timer failed")
			}
		}
		log.Debug().Int("messages", len(msgs)).Msg("Backfilling chat from history sync")
		for _, evt := range msgs {
			s.handleMessage(ctx, q, evt, true)
		}
	}
}

// backfilled adds n to the messages backfilled into a chat this run and returns the
// total before.
func (s *session) backfilled(chat types.JID, n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.backfill[chat]
	s.backfill[chat] = before + n
	return before
}
