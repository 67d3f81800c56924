package whatsapp

import (
	"context"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/passerelle/passerelle/bridge"
)

// Power levels given to group admins on Matrix.
const (
	adminPowerLevel      = 50
	superAdminPowerLevel = 75
)

// chatInfo describes a chat for portal creation: the contact for a DM, the group's
// name, topic, avatar and participants otherwise (fetched once per run).
func (s *session) chatInfo(ctx context.Context, chat types.JID) *bridge.ChatInfo {
	if isDMChat(chat) {
		return s.dmInfo(ctx, canonicalUser(ctx, s.client.Device(), chat))
	}
	s.mu.Lock()
	cached := s.groups[chat]
	s.mu.Unlock()
	if cached != nil {
		return cached
	}
	info := &bridge.ChatInfo{Key: s.portalKey(ctx, chat)}
	gi, err := s.client.GetGroupInfo(ctx, chat)
	if err != nil {
		s.log.Warn().Err(err).Str("chat_id", chat.String()).Msg("Fetching group info failed")
		return info // the next message tries again
	}
	info = s.groupChatInfo(ctx, gi)
	s.mu.Lock()
	s.groups[chat] = info
	s.mu.Unlock()
	return info
}

// dmInfo describes the DM with a (canonical) contact.
func (s *session) dmInfo(ctx context.Context, user types.JID) *bridge.ChatInfo {
	return &bridge.ChatInfo{Key: s.portalKey(ctx, user), IsDM: true, OtherUser: ghostID(user),
		Name: s.contactName(ctx, user, "")}
}

// groupChatInfo converts whatsmeow's group info.
func (s *session) groupChatInfo(ctx context.Context, gi *types.GroupInfo) *bridge.ChatInfo {
	info := &bridge.ChatInfo{Key: s.portalKey(ctx, gi.JID), Name: gi.Name, Topic: gi.Topic}
	for _, p := range gi.Participants {
		user := p.JID
		if !p.PhoneNumber.IsEmpty() {
			user = p.PhoneNumber
		}
		if s.isOwn(ctx, user) || s.isOwn(ctx, p.JID) {
			continue // the Matrix user is in the room as themselves
		}
		user = canonicalUser(ctx, s.client.Device(), user)
		m := bridge.ChatMember{RemoteID: ghostID(user), Name: s.contactName(ctx, user, p.DisplayName)}
		switch {
		case p.IsSuperAdmin:
			m.PowerLevel = ptr(superAdminPowerLevel)
		case p.IsAdmin:
			m.PowerLevel = ptr(adminPowerLevel)
		}
		info.Members = append(info.Members, m)
	}
	if avatar := s.fetchAvatar(ctx, gi.JID); avatar != nil {
		info.Avatar = avatar
	}
	return info
}

func ptr[T any](v T) *T { return &v }

// handleGroupInfo follows group changes: name, topic, members joining and leaving,
// admins promoted and demoted.
func (s *session) handleGroupInfo(ctx context.Context, q *queuer, e *events.GroupInfo) {
	key := s.portalKey(ctx, e.JID)
	s.mu.Lock()
	delete(s.groups, e.JID) // refetched on next use
	s.mu.Unlock()
	sender := bridge.Sender{}
	if e.Sender != nil {
		src := types.MessageSource{Sender: *e.Sender, IsFromMe: s.isOwn(ctx, *e.Sender)}
		if e.SenderPN != nil {
			src.SenderAlt = *e.SenderPN
		}
		sender = s.senderOfSource(ctx, src, "")
	}
	if e.Name != nil || e.Topic != nil {
		info := s.chatInfo(ctx, e.JID)
		q.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteChatInfo, Chat: key, Sender: sender, Timestamp: e.Timestamp, ChatInfo: info})
	}
	member := func(jid types.JID) (bridge.RemoteUserID, bool) {
		user := canonicalUser(ctx, s.client.Device(), jid)
		return ghostID(user), !s.isOwn(ctx, jid)
	}
	if e.Ephemeral != nil {
		secs := uint32(0)
		if e.Ephemeral.IsEphemeral {
			secs = e.Ephemeral.DisappearingTimer
		}
		if err := s.c.timers.setChatTimer(ctx, key, secs); err != nil {
			s.log.Warn().Err(err).Msg("Saving the disappearing-message timer failed")
		}
		q.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteMessage, Chat: key, Sender: sender, Timestamp: e.Timestamp,
			Content: noticeContent(timerText(secs)), CreatePortal: true, ChatInfo: s.chatInfo(ctx, e.JID)})
	}
	for _, jid := range e.Join {
		if remote, ok := member(jid); ok {
			q.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteJoin, Chat: key, Timestamp: e.Timestamp,
				Sender: bridge.Sender{RemoteID: bridge.RemoteUserID(remote), Name: s.contactName(ctx, jid, "")}})
		}
	}
	for _, jid := range e.Leave {
		remote, ok := member(jid)
		if !ok {
			continue
		}
		if e.Sender != nil && sender.RemoteID != remote {
			q.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteKick, Chat: key, Timestamp: e.Timestamp, Sender: sender, TargetUser: bridge.RemoteUserID(remote)})
		} else {
			q.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteLeave, Chat: key, Timestamp: e.Timestamp, Sender: bridge.Sender{RemoteID: bridge.RemoteUserID(remote)}})
		}
	}
	for _, change := range []struct {
		users []types.JID
		level int
	}{{e.Promote, adminPowerLevel}, {e.Demote, 0}} {
		for _, jid := range change.users {
			if remote, ok := member(jid); ok {
				q.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemotePowerLevel, Chat: key, Timestamp: e.Timestamp,
					Sender: sender, TargetUser: bridge.RemoteUserID(remote), PowerLevel: ptr(change.level)})
			}
		}
	}
}

// isGroupAdmin says whether a contact administers a group (from the group's info).
func (s *session) isGroupAdmin(ctx context.Context, chat types.JID, remoteID bridge.RemoteUserID) bool {
	if isDMChat(chat) || remoteID == "" {
		return false
	}
	for _, m := range s.chatInfo(ctx, chat).Members {
		if m.RemoteID == remoteID && m.PowerLevel != nil && *m.PowerLevel >= adminPowerLevel {
			return true
		}
	}
	return false
}
