package whatsapp

import (
	"context"
	"strconv"
	"time"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/passerelle/passerelle/bridge"
)

// handleEvent is the session's whatsmeow event handler. Events are queued durably
// before it returns, and whatsmeow acknowledges a message to WhatsApp only after its
// handlers return, so a crash loses nothing.
func (s *session) handleEvent(evt any) bool {
	if s.handleConnectionEvent(evt) {
		return true
	}
	ctx := s.log.WithContext(s.c.runCtxOr())
	q := &queuer{s: s}
	switch e := evt.(type) {
	case *events.Message:
		s.handleMessage(ctx, q, e, false)
	case *events.UndecryptableMessage:
		s.handleUndecryptable(ctx, q, e)
	case *events.Receipt:
		s.handleReceipt(ctx, q, e)
	case *events.ChatPresence:
		s.handleChatPresence(ctx, q, e)
	case *events.HistorySync:
		s.handleHistorySync(ctx, q, e)
	case *events.GroupInfo:
		s.handleGroupInfo(ctx, q, e)
	case *events.PushName:
		s.handlePushName(ctx, q, e)
	case *events.Picture:
		s.handlePicture(ctx, q, e)
	}
	// false keeps whatsmeow from acknowledging what could not be stored.
	return !q.failed
}

// queueTimeout bounds how long one WhatsApp event waits to be stored.
const queueTimeout = 30 * time.Second

// queuer hands one whatsmeow event's remote events to the core and remembers whether
// all of them were stored.
type queuer struct {
	s      *session
	failed bool
}

// queue hands an event to the core, logging (never dropping silently) a failure.
func (q *queuer) queue(ctx context.Context, evt *bridge.RemoteEvent) {
	evt.Chat.Connector = connectorName
	evt.Sender.Login = q.s.login.ID
	// Not stored within the bound, the event is left unacknowledged: WhatsApp delivers
	// it again, rather than whatsmeow's handler waiting on a database that is away.
	storeCtx, cancel := context.WithTimeout(ctx, queueTimeout)
	defer cancel()
	if err := q.s.c.host.QueueRemoteEvent(storeCtx, evt); err != nil {
		q.failed = true
		q.s.log.Error().Err(err).Str("remote_event", string(evt.Type)).Str("remote_id", string(evt.ID)).Msg("Queueing WhatsApp event failed")
	}
}

// portalKey is the portal of a chat in this login's view.
func (s *session) portalKey(ctx context.Context, chat types.JID) bridge.PortalKey {
	return bridge.PortalKey{Connector: connectorName, ChatID: chatID(ctx, s.client.Device(), chat), Receiver: s.login.ID}
}

// senderOfSource says who did something: the login itself (sent from the phone, shown
// as the user's double puppet) or a contact's ghost.
func (s *session) senderOfSource(ctx context.Context, src types.MessageSource, pushName string) bridge.Sender {
	if src.IsFromMe {
		return bridge.Sender{IsFromMe: true, RemoteID: ghostID(s.ownJID())}
	}
	user := src.Sender
	if user.Server == types.HiddenUserServer && !src.SenderAlt.IsEmpty() && src.SenderAlt.Server == types.DefaultUserServer {
		// whatsmeow stores this mapping itself; using it directly spares a lookup.
		user = src.SenderAlt
	}
	user = canonicalUser(ctx, s.client.Device(), user)
	return bridge.Sender{RemoteID: ghostID(user), Name: s.contactName(ctx, user, pushName)}
}

// chatOf is the chat a message belongs to: a broadcast list's message lands in the DM
// with its sender, as on the phone.
func chatOf(src types.MessageSource) types.JID {
	if src.IsIncomingBroadcast() && src.Chat != types.StatusBroadcastJID {
		return src.Sender
	}
	return src.Chat
}

// skipChat says whether a chat is never bridged.
func (s *session) skipChat(chat types.JID) bool {
	switch {
	case chat == types.StatusBroadcastJID:
		return !s.c.cfg.BridgeStatusBroadcast
	case chat.Server == types.NewsletterServer, chat.Server == types.BroadcastServer && chat != types.StatusBroadcastJID:
		return true
	}
	return false
}

// handleMessage bridges one message; backfill marks history-sync messages.
func (s *session) handleMessage(ctx context.Context, q *queuer, evt *events.Message, backfill bool) {
	info := evt.Info
	chat := chatOf(info.MessageSource)
	if s.skipChat(chat) || evt.Message == nil {
		return
	}
	key := s.portalKey(ctx, chat)
	sender := s.senderOfSource(ctx, info.MessageSource, info.PushName)
	log := s.log.With().Object("portal", key).Str("remote_id", info.ID).Logger()
	ctx = log.WithContext(ctx)
	msg := evt.Message
	base := bridge.RemoteEvent{Chat: key, Sender: sender, Timestamp: info.Timestamp, Backfill: backfill}
	switch {
	case msg.ProtocolMessage != nil:
		s.handleProtocolMessage(ctx, q, base, msg.GetProtocolMessage(), chat)
		return
	case msg.ReactionMessage != nil:
		r := msg.GetReactionMessage()
		base.TargetID = bridge.RemoteMessageID(r.GetKey().GetID())
		base.Emoji = r.GetText()
		base.ID = bridge.RemoteMessageID(info.ID)
		if base.Emoji == "" {
			base.Type = bridge.RemoteUnreaction
		} else {
			// One reaction per person per message on WhatsApp: a new one replaces it.
			base.Type = bridge.RemoteReaction
			base.ReplaceReactions = true
		}
		q.queue(ctx, &base)
		return
	case msg.EncReactionMessage != nil, msg.PollUpdateMessage != nil, msg.KeepInChatMessage != nil, msg.PinInChatMessage != nil:
		// Encrypted votes and reactions to community posts, pins and keeps carry nothing
		// a Matrix room can show.
		return
	}
	if isOnlyKeyDistribution(msg) {
		return
	}
	if err := s.rememberSender(ctx, string(key.ChatID), info.ID, info.Sender); err != nil {
		// Left unacknowledged, WhatsApp delivers the message again and the sender is
		// stored then (the core skips the second copy); the message is bridged now all
		// the same. Logged without the portal: a DM's chat ID is a phone number.
		s.log.Error().Err(err).Str("remote_id", info.ID).Msg("Storing the message's sender failed")
		q.failed = true
	}
	base.Type = bridge.RemoteMessage
	base.ID = bridge.RemoteMessageID(info.ID)
	base.Content = s.contentFromWA(ctx, msg)
	base.CreatePortal = true
	base.ChatInfo = s.chatInfo(ctx, chat)
	q.queue(ctx, &base)
	if exp := contextInfo(msg).GetExpiration(); exp > 0 {
		// Counted from when it was sent: a backfilled message past its time goes at once.
		s.c.timers.schedule(ctx, key, info.ID, info.Timestamp.Add(time.Duration(exp)*time.Second))
		if !backfill && s.c.timers.chatTimer(ctx, key) != exp {
			// The chat's timer, as the phone applies it: Matrix messages carry it too.
			if err := s.c.timers.setChatTimer(ctx, key, exp); err != nil {
				s.log.Warn().Err(err).Msg("Saving the disappearing-message timer failed")
			}
		}
	}
}

// isOnlyKeyDistribution is a message that only carries encryption keys.
func isOnlyKeyDistribution(msg *waE2E.Message) bool {
	if msg.SenderKeyDistributionMessage == nil {
		return false
	}
	return contentEmpty(msg)
}

// contentEmpty says whether a message has no field that carries content.
func contentEmpty(msg *waE2E.Message) bool {
	return msg.Conversation == nil && msg.ExtendedTextMessage == nil && msg.ImageMessage == nil && msg.VideoMessage == nil &&
		msg.AudioMessage == nil && msg.DocumentMessage == nil && msg.StickerMessage == nil && msg.LocationMessage == nil &&
		msg.LiveLocationMessage == nil && msg.ContactMessage == nil && msg.ContactsArrayMessage == nil && pollOf(msg) == nil &&
		msg.PtvMessage == nil && msg.GroupInviteMessage == nil && msg.ProtocolMessage == nil && msg.ReactionMessage == nil
}

// handleProtocolMessage bridges revokes, edits and disappearing-timer changes.
func (s *session) handleProtocolMessage(ctx context.Context, q *queuer, base bridge.RemoteEvent, pm *waE2E.ProtocolMessage, chat types.JID) {
	switch pm.GetType() {
	case waE2E.ProtocolMessage_REVOKE:
		base.Type = bridge.RemoteRedaction
		base.TargetID = bridge.RemoteMessageID(pm.GetKey().GetID())
		// Only the sender revokes their own messages, or a group admin anyone's: the
		// core refuses others.
		base.Moderator = base.Sender.IsFromMe || s.isGroupAdmin(ctx, chat, base.Sender.RemoteID)
		q.queue(ctx, &base)
	case waE2E.ProtocolMessage_MESSAGE_EDIT:
		if pm.GetEditedMessage() == nil {
			return
		}
		base.Type = bridge.RemoteEdit
		base.TargetID = bridge.RemoteMessageID(pm.GetKey().GetID())
		base.Content = s.contentFromWA(ctx, pm.GetEditedMessage())
		base.Content.ReplyTo = ""
		q.queue(ctx, &base)
	case waE2E.ProtocolMessage_EPHEMERAL_SETTING:
		secs := pm.GetEphemeralExpiration()
		if err := s.c.timers.setChatTimer(ctx, base.Chat, secs); err != nil {
			s.log.Warn().Err(err).Msg("Saving the disappearing-message timer failed")
		}
		base.Type = bridge.RemoteMessage
		base.Content = noticeContent(timerText(secs))
		base.CreatePortal = true
		base.ChatInfo = s.chatInfo(ctx, chat)
		q.queue(ctx, &base)
	}
}

// timerText describes a disappearing-message timer.
func timerText(secs uint32) string {
	if secs == 0 {
		return "Disappearing messages were turned off."
	}
	d := time.Duration(secs) * time.Second
	var span string
	switch {
	case d%(24*time.Hour) == 0:
		n := int(d / (24 * time.Hour))
		span = plural(n, "day")
	case d%time.Hour == 0:
		span = plural(int(d/time.Hour), "hour")
	default:
		span = d.String()
	}
	return "Disappearing messages were turned on: new messages disappear after " + span + " (on Matrix too)."
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

// handleReceipt bridges read receipts: someone else's as their ghost's, the user's
// own (read on the phone) as their double puppet's.
func (s *session) handleReceipt(ctx context.Context, q *queuer, e *events.Receipt) {
	if e.Type != types.ReceiptTypeRead && e.Type != types.ReceiptTypeReadSelf || len(e.MessageIDs) == 0 {
		return
	}
	chat := chatOf(e.MessageSource)
	if s.skipChat(chat) {
		return
	}
	evt := &bridge.RemoteEvent{Type: bridge.RemoteReceipt, Chat: s.portalKey(ctx, chat),
		Sender: s.senderOfSource(ctx, e.MessageSource, ""), Timestamp: e.Timestamp,
		TargetID: bridge.RemoteMessageID(e.MessageIDs[len(e.MessageIDs)-1])}
	q.queue(ctx, evt)
}

// handleChatPresence bridges typing notifications.
func (s *session) handleChatPresence(ctx context.Context, q *queuer, e *events.ChatPresence) {
	if e.IsFromMe || s.skipChat(e.Chat) {
		return
	}
	evt := &bridge.RemoteEvent{Type: bridge.RemoteTyping, Chat: s.portalKey(ctx, e.Chat),
		Sender: s.senderOfSource(ctx, e.MessageSource, ""), Typing: e.State == types.ChatPresenceComposing}
	q.queue(ctx, evt)
}

// handlePushName updates a contact's ghost when they change their own name.
func (s *session) handlePushName(ctx context.Context, q *queuer, e *events.PushName) {
	user := canonicalUser(ctx, s.client.Device(), e.JID)
	if user.User == s.ownJID().User {
		return
	}
	evt := &bridge.RemoteEvent{Type: bridge.RemoteProfile, Chat: s.portalKey(ctx, user),
		Sender: bridge.Sender{RemoteID: ghostID(user), Name: s.contactName(ctx, user, e.NewPushName)}}
	q.queue(ctx, evt)
}

// handlePicture follows profile and group picture changes. A removed picture is left
// in place on Matrix (WhatsApp sends no replacement to show).
func (s *session) handlePicture(ctx context.Context, q *queuer, e *events.Picture) {
	if e.Remove {
		return
	}
	if isDMChat(e.JID) {
		user := canonicalUser(ctx, s.client.Device(), e.JID)
		if user.User == s.ownJID().User {
			return
		}
		avatar := s.fetchAvatar(ctx, user)
		if avatar == nil {
			return
		}
		q.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteProfile, Chat: s.portalKey(ctx, user), Timestamp: e.Timestamp,
			Sender: bridge.Sender{RemoteID: ghostID(user), Name: s.contactName(ctx, user, ""), Avatar: avatar}})
		return
	}
	s.mu.Lock()
	delete(s.groups, e.JID)
	s.mu.Unlock()
	info := s.chatInfo(ctx, e.JID)
	q.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteChatInfo, Chat: s.portalKey(ctx, e.JID), Timestamp: e.Timestamp, ChatInfo: info})
}

// handleUndecryptable tells the user a message could not be read, instead of losing it
// silently; whatsmeow asks the phone to send it again, and it replaces nothing.
func (s *session) handleUndecryptable(ctx context.Context, q *queuer, e *events.UndecryptableMessage) {
	chat := chatOf(e.Info.MessageSource)
	if s.skipChat(chat) || e.DecryptFailMode == events.DecryptFailHide {
		return
	}
	q.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteMessage, Chat: s.portalKey(ctx, chat), ID: bridge.RemoteMessageID("undecryptable:" + e.Info.ID),
		Sender: s.senderOfSource(ctx, e.Info.MessageSource, e.Info.PushName), Timestamp: e.Info.Timestamp,
		Content:      noticeContent("A message could not be decrypted; the bridge asked your phone for it again. Open WhatsApp on your phone if it does not appear."),
		CreatePortal: true, ChatInfo: s.chatInfo(ctx, chat)})
}

// isOwn says whether a user JID (phone number or hidden ID) is the account itself.
func (s *session) isOwn(ctx context.Context, jid types.JID) bool {
	user := canonicalUser(ctx, s.client.Device(), jid)
	if user.User == s.ownJID().User {
		return true
	}
	dev := s.client.Device()
	return dev != nil && !dev.LID.IsEmpty() && jid.ToNonAD().User == dev.LID.User && jid.Server == types.HiddenUserServer
}
