package bridge

// Network → Matrix: remote events come out of the queue here, in order per chat, and
// are sent into every room linked to the chat as the right user.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

func (br *Bridge) handleRemoteItem(ctx context.Context, item database.QueueItem) error {
	var evt RemoteEvent
	if err := json.Unmarshal(item.Payload, &evt); err != nil {
		return fmt.Errorf("%w: decoding remote event: %v", errPermanent, err)
	}
	ch := br.connector(evt.Chat.Connector)
	if ch == nil {
		return fmt.Errorf("%w: remote event for disabled connector %q", errPermanent, evt.Chat.Connector)
	}
	log := zerolog.Ctx(ctx).With().Object("portal", evt.Chat).Str("remote_event", string(evt.Type)).Str("remote_id", string(evt.ID)).Logger()
	ctx = log.WithContext(ctx)
	rooms, err := br.linkedRooms(ctx, ch, &evt)
	if err != nil {
		return err
	}
	if evt.Type == RemoteChatInfo && evt.ChatInfo != nil {
		old, err := br.DB.GetPortal(ctx, evt.Chat.Connector, string(evt.Chat.ChatID), string(evt.Chat.Receiver))
		if err != nil {
			return err
		}
		info := evt.ChatInfo
		if err = br.uploadChatAvatar(ctx, info); err != nil {
			return err
		}
		if info.MembersComplete {
			for _, room := range rooms {
				if err = br.syncMembers(ctx, ch, room, info); err != nil {
					log.Warn().Err(err).Str("room_id", room.RoomID).Msg("Syncing room members with the chat failed")
				}
			}
		}
		if old != nil && old.Name == info.Name && old.Topic == info.Topic && old.AvatarURL == info.AvatarURL.String() {
			return nil // nothing changed (a reconnect repeats what we know)
		}
		if err = br.DB.UpsertPortal(ctx, &database.PortalRow{Connector: evt.Chat.Connector, ChatID: string(evt.Chat.ChatID),
			Receiver: string(evt.Chat.Receiver), Name: info.Name, Topic: info.Topic,
			AvatarURL: info.AvatarURL.String(), IsDM: info.IsDM, OtherUser: string(info.OtherUser)}); err != nil {
			return err
		}
	}
	if evt.Type == RemotePresence {
		// Presence belongs to the user, not to a room.
		if evt.Sender.RemoteID == "" {
			return nil
		}
		intent, err := ch.ghostIntentFor(ctx, evt.Sender.RemoteID, evt.Sender.ghostInfo(), br.senderBudget(&evt))
		if err != nil {
			return err
		}
		req := mautrix.ReqPresence{Presence: event.PresenceOnline}
		if evt.Reason != "" {
			req = mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: evt.Reason}
		}
		return intent.SetPresence(ctx, req)
	}
	if evt.Type == RemoteProfile && len(rooms) == 0 {
		// A profile belongs to the user: it applies even when their chat has no room
		// (a contact only met in groups).
		if evt.Sender.RemoteID == "" {
			return nil
		}
		return ch.ensureGhostFor(ctx, evt.Sender.RemoteID, evt.Sender.ghostInfo(), br.senderBudget(&evt))
	}
	if len(rooms) == 0 {
		log.Debug().Msg("No room linked to chat, dropping remote event")
		return nil
	}
	intent, err := br.remoteSenderIntent(ctx, ch, &evt)
	if err != nil {
		return err
	}
	var firstErr error
	for _, room := range rooms {
		roomID := id.RoomID(room.RoomID)
		if item.Resumed && evt.Type == RemoteMessage && evt.ID != "" {
			if done, err := br.recoverSentMessage(ctx, &evt, room); err != nil {
				return err
			} else if done {
				continue
			}
		}
		if err := br.applyRemoteEvent(ctx, ch, &evt, room, intent, item.Seq); err != nil {
			log.Warn().Err(err).Stringer("room_id", roomID).Msg("Bridging remote event into room failed")
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// remoteSenderIntent picks who speaks on Matrix: the user's real account for their own
// actions when double puppeting is set up, otherwise the sender's ghost.
func (br *Bridge) remoteSenderIntent(ctx context.Context, ch *connectorHost, evt *RemoteEvent) (*appservice.IntentAPI, error) {
	if evt.Sender.IsFromMe && evt.Sender.Login != "" {
		login, err := br.DB.GetLogin(ctx, ch.info.Name, string(evt.Sender.Login))
		if err != nil {
			return nil, err
		}
		if login != nil {
			if intent := br.doublePuppetIntent(ctx, id.UserID(login.MXID)); intent != nil {
				return intent, nil
			}
		}
	}
	if evt.Sender.RemoteID == "" {
		return br.AS.BotIntent(), nil
	}
	return ch.ghostIntentFor(ctx, evt.Sender.RemoteID, evt.Sender.ghostInfo(), br.senderBudget(evt))
}

// ghostInfo is the profile a sender's event carries.
func (s Sender) ghostInfo() *GhostInfo {
	return &GhostInfo{Name: s.Name, Account: s.Account, RealName: s.RealName, Avatar: s.Avatar}
}

// remoteTxnID derives the Matrix transaction ID from the remote event, so a retried or
// resumed event is deduplicated by the homeserver.
func remoteTxnID(evt *RemoteEvent, roomID id.RoomID, seq int64) string {
	// Without a remote ID (an edit, a reaction given twice) the queue position keeps
	// two distinct events apart; it is stable across retries and restarts.
	unique := string(evt.ID)
	if unique == "" {
		unique = fmt.Sprintf("seq:%d", seq)
	}
	h := sha256.Sum256([]byte(string(evt.Type) + "\x00" + evt.Chat.String() + "\x00" + unique + "\x00" + string(evt.TargetID) +
		"\x00" + string(evt.Sender.RemoteID) + "\x00" + evt.Emoji + "\x00" + roomID.String()))
	return "pass_" + base64.RawURLEncoding.EncodeToString(h[:18])
}

// applyRemoteEvent bridges one remote event into one linked room.
func (br *Bridge) applyRemoteEvent(ctx context.Context, ch *connectorHost, evt *RemoteEvent, room *database.RoomRow, intent *appservice.IntentAPI, seq int64) error {
	a := &remoteApply{br: br, ch: ch, evt: evt, room: room, roomID: id.RoomID(room.RoomID), intent: intent, seq: seq}
	switch evt.Type {
	case RemoteMessage:
		return a.message(ctx)
	case RemoteEdit:
		return a.edit(ctx)
	case RemoteRedaction:
		return a.redaction(ctx)
	case RemoteReaction:
		return a.reaction(ctx)
	case RemoteUnreaction:
		return a.unreaction(ctx)
	case RemoteTyping:
		return a.typing(ctx)
	case RemoteReceipt:
		return a.receipt(ctx)
	case RemoteJoin:
		return a.join(ctx)
	case RemoteLeave:
		return a.leave(ctx)
	case RemoteKick:
		return a.kick(ctx)
	case RemoteChatInfo:
		return a.chatInfo(ctx)
	case RemotePowerLevel:
		return a.powerLevel(ctx)
	case RemoteProfile:
		return a.profile(ctx)
	default:
		return fmt.Errorf("%w: unknown remote event type %q", errPermanent, evt.Type)
	}
}

// targetWait is how long a remote event about a message the bridge does not know yet is
// retried: a reaction or read receipt can overtake the recording of a message just
// sent from Matrix (the two directions have separate lanes).
const targetWait = 15 * time.Second

// targetNotYetKnown retries a fresh event whose target is unknown, and drops an old one
// (its target was never bridged).
func targetNotYetKnown(ctx context.Context, evt *RemoteEvent) error {
	if !evt.Timestamp.IsZero() && time.Since(evt.Timestamp) < targetWait {
		return fmt.Errorf("the target message %s is not known yet", evt.TargetID)
	}
	zerolog.Ctx(ctx).Debug().Str("target_id", string(evt.TargetID)).Msg("Target message unknown, dropping")
	return nil
}

// ownMessage says whether a remote event's sender sent the target message: as the same
// ghost or double puppet, or, for the login's own actions, as its Matrix user (a
// message they sent from Matrix and edit from their phone).
func (br *Bridge) ownMessage(ctx context.Context, evt *RemoteEvent, target *database.MessageRow, intent *appservice.IntentAPI) bool {
	if target.SenderMXID == intent.UserID.String() {
		return true
	}
	if !evt.Sender.IsFromMe || evt.Sender.Login == "" {
		return false
	}
	login, err := br.DB.GetLogin(ctx, evt.Chat.Connector, string(evt.Sender.Login))
	return err == nil && login != nil && login.MXID == target.SenderMXID
}

// removeReactions redacts every reaction a remote sender put on the event's target.
func (br *Bridge) removeReactions(ctx context.Context, room *database.RoomRow, evt *RemoteEvent, intent *appservice.IntentAPI, seq int64, senderKey string) error {
	rows, err := br.DB.ReactionsBy(ctx, room.RoomID, string(evt.TargetID), senderKey)
	if err != nil {
		return err
	}
	for i, row := range rows {
		txn := fmt.Sprintf("%s-unreact%d", remoteTxnID(evt, id.RoomID(room.RoomID), seq), i)
		if _, err = intent.RedactEvent(ctx, id.RoomID(room.RoomID), id.EventID(row.EventID), mautrix.ReqRedact{TxnID: txn}); err != nil {
			return fmt.Errorf("redacting replaced reaction: %w", err)
		}
		if err = br.DB.DeleteMessagesByEvent(ctx, room.RoomID, row.EventID); err != nil {
			return err
		}
	}
	return nil
}

// uploadChatAvatar turns a chat picture given as bytes into its mxc URI.
func (br *Bridge) uploadChatAvatar(ctx context.Context, info *ChatInfo) error {
	if info == nil || info.Avatar == nil || (len(info.Avatar.Data) == 0 && info.Avatar.Spool == "") || !info.AvatarURL.IsEmpty() {
		return nil
	}
	uri, err := br.uploadPublic(ctx, info.Avatar)
	if errors.Is(err, errSpoolFileLost) {
		zerolog.Ctx(ctx).Warn().Msg("The chat's new picture was lost from the media spool; keeping the old one")
		info.Avatar = nil
		return nil
	} else if err != nil {
		return fmt.Errorf("uploading chat avatar: %w", err)
	}
	info.AvatarURL = uri
	info.Avatar = nil
	return nil
}

// remoteIDKey marks bridged messages with their remote ID, so a crash between sending
// and recording the mapping can be recovered from the room's own history.
const remoteIDKey = "net.passerelle.remote_id"

// recoverSentMessage looks for a message that a crashed run sent but did not record
// (the homeserver's transaction-ID deduplication is in memory and misses a request cut
// off mid-flight). When found, the mapping is recorded and true returned.
func (br *Bridge) recoverSentMessage(ctx context.Context, evt *RemoteEvent, room *database.RoomRow) (bool, error) {
	key := evt.Chat
	if existing, err := br.DB.MessageByRemote(ctx, room.RoomID, key.Connector, string(key.ChatID), string(key.Receiver), string(evt.ID)); err != nil || existing != nil {
		return existing != nil, err
	}
	resp, err := br.AS.BotIntent().Messages(ctx, id.RoomID(room.RoomID), "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		return false, fmt.Errorf("reading recent history to recover: %w", err)
	}
	for _, e := range resp.Chunk {
		if rid, _ := br.sentContent(ctx, e).Raw[remoteIDKey].(string); rid == string(evt.ID) {
			zerolog.Ctx(ctx).Info().Stringer("event_id", e.ID).Msg("Recovered a message sent before a crash")
			return true, br.DB.InsertMessages(ctx, &database.MessageRow{RoomID: room.RoomID, EventID: e.ID.String(),
				Connector: key.Connector, ChatID: string(key.ChatID), Receiver: string(key.Receiver), RemoteID: string(evt.ID),
				SenderMXID: e.Sender.String(), CreatedAt: nonZeroTime(evt.Timestamp)})
		}
	}
	return false, nil
}

// sentContent is the content of a message the bridge may have sent, read from the
// room's history: in an encrypted room the bot decrypts it (it keeps the keys of what it
// sent). Anything else has no content worth reading.
func (br *Bridge) sentContent(ctx context.Context, e *event.Event) *event.Content {
	switch {
	case e.Type == event.EventMessage:
		return &e.Content
	case e.Type == event.EventEncrypted && br.crypto != nil && br.isBridgeUser(e.Sender):
		if err := e.Content.ParseRaw(e.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
			return &event.Content{}
		}
		decrypted, err := br.crypto.mach.DecryptMegolmEvent(ctx, e)
		if err != nil || decrypted.Type != event.EventMessage {
			return &event.Content{}
		}
		return &decrypted.Content
	}
	return &event.Content{}
}

func nonZeroTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

func ignoreForbidden(err error) error {
	if errors.Is(err, mautrix.MForbidden) {
		return nil
	}
	return err
}

// matrixContent turns a network-neutral message into Matrix content: uploads media,
// resolves the reply target, turns mentions into m.mentions.
func (br *Bridge) matrixContent(ctx context.Context, ch *connectorHost, roomID id.RoomID, mc *MessageContent, replyTarget func(string) id.EventID) (*event.Content, error) {
	content := &event.MessageEventContent{MsgType: mc.MsgType, Body: mc.Body, GeoURI: mc.GeoURI}
	if content.MsgType == "" {
		content.MsgType = event.MsgText
	}
	if mc.FormattedBody != "" {
		content.Format = event.FormatHTML
		content.FormattedBody = mc.FormattedBody
	}
	body, err := br.spool.body(mc.Media)
	if errors.Is(err, errSpoolFileLost) {
		zerolog.Ctx(ctx).Error().Str("spool_file", mc.Media.Spool).Msg("A received file is missing from the media spool")
		content.MsgType, content.Body = event.MsgNotice, fmt.Sprintf("A file (%s) was received but lost by the bridge before it could be bridged.", mc.Media.FileName)
		body = nil
	} else if err != nil {
		return nil, err
	}
	if body == nil && mc.Media != nil && content.MsgType != event.MsgNotice {
		// A file event without a file is invalid; say what came instead.
		zerolog.Ctx(ctx).Warn().Msg("A network message announced a file without its bytes")
		content.MsgType = event.MsgNotice
	}
	if body != nil {
		defer body.Close()
		if err := br.upload(ctx, br.AS.BotIntent(), roomID, content, body.r, body.size, mc.Media.MimeType, mc.Media.FileName); err != nil {
			return nil, err
		}
		content.Info = &event.FileInfo{MimeType: mc.Media.MimeType, Size: int(body.size),
			Width: mc.Media.Width, Height: mc.Media.Height, Duration: mc.Media.DurationMS}
		if mc.Media.Voice {
			content.MSC3245Voice = &event.MSC3245Voice{}
			content.MSC1767Audio = &event.MSC1767Audio{Duration: mc.Media.DurationMS}
		}
		if content.Body == "" {
			content.Body = mc.Media.FileName
		}
		if mc.Media.FileName != "" && mc.Media.FileName != content.Body {
			content.FileName = mc.Media.FileName
		}
	}
	content.Mentions = &event.Mentions{}
	for _, m := range mc.Mentions {
		content.Mentions.UserIDs = append(content.Mentions.UserIDs, ch.GhostMXID(m))
	}
	content.Mentions.UserIDs = append(content.Mentions.UserIDs, mc.MentionedMatrixUsers...)
	if mc.ReplyTo != "" && replyTarget != nil {
		if target := replyTarget(string(mc.ReplyTo)); target != "" {
			content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(target)
		}
	}
	return &event.Content{Parsed: content}, nil
}
