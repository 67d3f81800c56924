package whatsapp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
)

// chatJID returns the WhatsApp chat of a portal key, checking the session can reach it.
func (s *session) chatJID(key bridge.PortalKey) (types.JID, error) {
	if key.Receiver != s.login.ID {
		return types.EmptyJID, fmt.Errorf("whatsapp: chat %s belongs to another login", key.ChatID)
	}
	return parseChatID(key.ChatID)
}

// ready refuses to send while disconnected, with a message the user understands; the
// core retries transient errors, so a short drop delays the message rather than
// losing it.
func (s *session) ready() error {
	s.mu.Lock()
	gone := s.gone
	s.mu.Unlock()
	if gone {
		return bridge.NewUserError("your WhatsApp account is no longer linked to the bridge; send `login whatsapp` to link it again")
	}
	if !s.client.IsConnected() {
		return errors.New("whatsapp: not connected")
	}
	return nil
}

// messageID derives the WhatsApp message ID from the Matrix event's transaction ID, so
// a message retried after a crash is the same message for WhatsApp.
func messageID(txnID string) types.MessageID {
	sum := sha256.Sum256([]byte("passerelle-whatsapp:" + txnID))
	return types.MessageID("3EB0" + strings.ToUpper(hex.EncodeToString(sum[:9])))
}

// send sends a message and returns what WhatsApp assigned.
func (s *session) send(ctx context.Context, chat types.JID, msg *waE2E.Message, txnID string) (*bridge.SendResult, error) {
	resp, err := s.sendWA(ctx, chat, msg, txnID)
	if err != nil {
		return nil, err
	}
	return &bridge.SendResult{RemoteIDs: []bridge.RemoteMessageID{bridge.RemoteMessageID(resp.ID)}, Timestamp: resp.Timestamp}, nil
}

// sendWA sends a message and returns whatsmeow's answer.
func (s *session) sendWA(ctx context.Context, chat types.JID, msg *waE2E.Message, txnID string) (whatsmeow.SendResponse, error) {
	var extra whatsmeow.SendRequestExtra
	if txnID != "" {
		extra.ID = messageID(txnID)
	}
	resp, err := s.client.SendMessage(ctx, chat, msg, extra)
	if err != nil {
		return resp, fmt.Errorf("whatsapp: sending: %w", err)
	}
	return resp, nil
}

// SendMessage implements bridge.Session.
func (s *session) SendMessage(ctx context.Context, msg *bridge.MatrixMessage) (*bridge.SendResult, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	chat, err := s.chatJID(msg.Chat)
	if err != nil {
		return nil, err
	}
	wa, err := s.waMessage(ctx, msg, chat)
	if err != nil {
		return nil, err
	}
	resp, err := s.sendWA(ctx, chat, wa, msg.TxnID)
	if err != nil {
		return nil, err
	}
	res := &bridge.SendResult{RemoteIDs: []bridge.RemoteMessageID{bridge.RemoteMessageID(resp.ID)}, Timestamp: resp.Timestamp}
	// The account's own identity as the message went out (its hidden ID in a
	// LID-addressed group), so a reply to it later quotes the form WhatsApp uses.
	sender := resp.Sender
	if sender.IsEmpty() {
		sender = s.ownJID()
	}
	if err = s.rememberSender(ctx, string(msg.Chat.ChatID), resp.ID, sender); err != nil {
		// The message is out: failing would make the core send it again. Without the
		// record, replies to it fall back on the account's phone-number JID.
		s.log.Warn().Err(err).Msg("Storing the sent message's sender failed")
	}
	if exp := s.c.timers.chatTimer(ctx, msg.Chat); exp > 0 {
		s.c.timers.schedule(ctx, msg.Chat, string(res.RemoteIDs[0]), time.Now().Add(time.Duration(exp)*time.Second))
	}
	return res, nil
}

// waMessage builds the WhatsApp message for a Matrix message.
func (s *session) waMessage(ctx context.Context, msg *bridge.MatrixMessage, chat types.JID) (*waE2E.Message, error) {
	content := msg.Content
	ci := &waE2E.ContextInfo{}
	if exp := s.c.timers.chatTimer(ctx, msg.Chat); exp > 0 {
		ci.Expiration = proto.Uint32(exp)
	}
	if msg.ReplyTo != "" {
		ci.StanzaID = proto.String(string(msg.ReplyTo))
		participant := s.participantOf(msg.ReplyToSender)
		if from, ok := s.senderOf(ctx, string(msg.Chat.ChatID), string(msg.ReplyTo)); ok {
			participant = from // as WhatsApp knows it (a hidden ID in some groups)
		}
		ci.Participant = proto.String(participant.String())
		ci.QuotedMessage = &waE2E.Message{Conversation: proto.String("")}
	}
	text, mentions := s.textToWA(&content)
	for _, m := range mentions {
		ci.MentionedJID = append(ci.MentionedJID, m)
	}
	switch content.MsgType {
	case event.MsgImage, event.MsgVideo, event.MsgAudio, event.MsgFile, bridge.MsgSticker:
		return s.mediaMessage(ctx, &content, text, ci)
	case event.MsgLocation:
		lat, long, err := parseGeoURI(content.GeoURI)
		if err != nil {
			return nil, bridge.NewUserError("the location could not be read (%v)", err)
		}
		return &waE2E.Message{LocationMessage: &waE2E.LocationMessage{DegreesLatitude: proto.Float64(lat),
			DegreesLongitude: proto.Float64(long), ContextInfo: ci}}, nil
	case event.MsgEmote:
		text = "_* " + text + "_"
	}
	if proto.Equal(ci, &waE2E.ContextInfo{}) {
		return &waE2E.Message{Conversation: proto.String(text)}, nil
	}
	return &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String(text), ContextInfo: ci}}, nil
}

// textToWA converts a message's text and mention pills to WhatsApp markup; it returns
// the text and the JIDs mentioned in it.
func (s *session) textToWA(content *bridge.MessageContent) (string, []string) {
	servers := map[string]string{}
	text, users := matrixToWA(content.FormattedBody, content.Body, func(mxid string) (string, bool) {
		jid := s.participantOf(id.UserID(mxid))
		if _, ghost := s.c.host.ParseGhostMXID(id.UserID(mxid)); !ghost && id.UserID(mxid) != s.login.UserMXID {
			return "", false
		}
		servers[jid.User] = jid.Server
		return jid.User, true
	})
	jids := make([]string, 0, len(users))
	for _, u := range users {
		jids = append(jids, types.NewJID(u, servers[u]).String())
	}
	return text, jids
}

// participantOf is the WhatsApp user behind a Matrix sender of a replied-to or
// reacted-to message: a ghost's contact, or the account itself.
func (s *session) participantOf(user id.UserID) types.JID {
	if remote, ok := s.c.host.ParseGhostMXID(user); ok {
		if jid, err := parseGhostID(remote); err == nil {
			return jid
		}
	}
	return s.ownJID()
}

// upload encrypts a file for WhatsApp through a spool file (WhatsApp's media encryption
// needs the whole ciphertext before the upload starts) and uploads it, so the file is
// never whole in memory.
func (s *session) upload(ctx context.Context, media *bridge.Media, kind whatsmeow.MediaType) (whatsmeow.UploadResponse, error) {
	tmp, err := s.c.host.CreateMediaFile(int64(media.Size) + mediaCipherOverhead)
	if err != nil {
		return whatsmeow.UploadResponse{}, fmt.Errorf("whatsapp: preparing the upload: %w", err)
	}
	defer tmp.Discard()
	up, err := s.client.UploadReader(ctx, io.LimitReader(media.Reader, int64(media.Size)), tmp, kind)
	if err != nil {
		return whatsmeow.UploadResponse{}, fmt.Errorf("whatsapp: uploading media: %w", err)
	}
	return up, nil
}

// mediaMessage uploads a file to WhatsApp and builds the message that carries it.
func (s *session) mediaMessage(ctx context.Context, content *bridge.MessageContent, caption string, ci *waE2E.ContextInfo) (*waE2E.Message, error) {
	media := content.Media
	if media == nil || media.Reader == nil {
		return nil, bridge.NewUserError("the file could not be read from Matrix")
	}
	if media.Size > s.c.cfg.MaxMediaBytes {
		return nil, bridge.NewUserError("the file is %d MiB, over the bridge's WhatsApp limit of %d MiB", media.Size>>20, s.c.cfg.MaxMediaBytes>>20)
	}
	if caption == media.FileName || caption == content.Body && content.Body == media.FileName {
		caption = ""
	}
	mimeType := media.MimeType
	if mimeType == "" {
		mimeType = "application/octet-stream"
	}
	var kind whatsmeow.MediaType
	switch content.MsgType {
	case event.MsgImage, bridge.MsgSticker:
		kind = whatsmeow.MediaImage
	case event.MsgVideo:
		kind = whatsmeow.MediaVideo
	case event.MsgAudio:
		kind = whatsmeow.MediaAudio
	default:
		kind = whatsmeow.MediaDocument
	}
	up, err := s.upload(ctx, media, kind)
	if err != nil {
		return nil, err
	}
	size := proto.Uint64(up.FileLength)
	var capt *string
	if caption != "" {
		capt = proto.String(caption)
	}
	switch {
	case content.MsgType == bridge.MsgSticker:
		return &waE2E.Message{StickerMessage: &waE2E.StickerMessage{URL: &up.URL, DirectPath: &up.DirectPath, MediaKey: up.MediaKey,
			Mimetype: proto.String(mimeType), FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: size,
			Width: dim(media.Width), Height: dim(media.Height), ContextInfo: ci}}, nil
	case kind == whatsmeow.MediaImage:
		return &waE2E.Message{ImageMessage: &waE2E.ImageMessage{URL: &up.URL, DirectPath: &up.DirectPath, MediaKey: up.MediaKey,
			Mimetype: proto.String(mimeType), FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: size,
			Width: dim(media.Width), Height: dim(media.Height), Caption: capt, ContextInfo: ci}}, nil
	case kind == whatsmeow.MediaVideo:
		return &waE2E.Message{VideoMessage: &waE2E.VideoMessage{URL: &up.URL, DirectPath: &up.DirectPath, MediaKey: up.MediaKey,
			Mimetype: proto.String(mimeType), FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: size,
			Width: dim(media.Width), Height: dim(media.Height), Seconds: dim(media.DurationMS / 1000), Caption: capt, ContextInfo: ci}}, nil
	case kind == whatsmeow.MediaAudio:
		return &waE2E.Message{AudioMessage: &waE2E.AudioMessage{URL: &up.URL, DirectPath: &up.DirectPath, MediaKey: up.MediaKey,
			Mimetype: proto.String(mimeType), FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: size,
			Seconds: dim(media.DurationMS / 1000), PTT: proto.Bool(media.Voice), ContextInfo: ci}}, nil
	default:
		name := media.FileName
		if name == "" {
			name = "file"
		}
		return &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{URL: &up.URL, DirectPath: &up.DirectPath, MediaKey: up.MediaKey,
			Mimetype: proto.String(mimeType), FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: size,
			FileName: proto.String(name), Title: proto.String(name), Caption: capt, ContextInfo: ci}}, nil
	}
}

func dim(v int) *uint32 {
	if v <= 0 {
		return nil
	}
	return proto.Uint32(uint32(v))
}

// parseGeoURI reads "geo:lat,long[;…]".
func parseGeoURI(uri string) (float64, float64, error) {
	rest, ok := strings.CutPrefix(uri, "geo:")
	if !ok {
		return 0, 0, fmt.Errorf("not a geo: URI: %q", uri)
	}
	rest, _, _ = strings.Cut(rest, ";")
	latText, longText, ok := strings.Cut(rest, ",")
	if !ok {
		return 0, 0, fmt.Errorf("no longitude in %q", uri)
	}
	longText, _, _ = strings.Cut(longText, ",") // altitude
	lat, err1 := strconv.ParseFloat(latText, 64)
	long, err2 := strconv.ParseFloat(longText, 64)
	if err1 != nil || err2 != nil || lat < -90 || lat > 90 || long < -180 || long > 180 {
		return 0, 0, fmt.Errorf("bad coordinates in %q", uri)
	}
	return lat, long, nil
}

// SendEdit implements bridge.EditingSession.
func (s *session) SendEdit(ctx context.Context, edit *bridge.MatrixEdit) (*bridge.SendResult, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	chat, err := s.chatJID(edit.Chat)
	if err != nil {
		return nil, err
	}
	if len(edit.TargetIDs) == 0 {
		return nil, bridge.NewUserError("the edited message is not known on WhatsApp")
	}
	text, mentions := s.textToWA(&edit.Content)
	newContent := &waE2E.Message{Conversation: proto.String(text)}
	if len(mentions) > 0 {
		newContent = &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String(text),
			ContextInfo: &waE2E.ContextInfo{MentionedJID: mentions}}}
	}
	res, err := s.send(ctx, chat, s.client.BuildEdit(chat, types.MessageID(edit.TargetIDs[0]), newContent), edit.TxnID)
	if err != nil {
		return nil, err
	}
	// The edit is a change to the original, not a message of its own.
	return &bridge.SendResult{RemoteIDs: edit.TargetIDs[:1], Timestamp: res.Timestamp}, nil
}

// SendRedaction implements bridge.RedactingSession: a revoke ("deleted for everyone"),
// or the removal of a reaction.
func (s *session) SendRedaction(ctx context.Context, r *bridge.MatrixRedaction) error {
	if err := s.ready(); err != nil {
		return err
	}
	chat, err := s.chatJID(r.Chat)
	if err != nil {
		return err
	}
	if r.IsReaction {
		if r.ReactionTarget == "" {
			return nil
		}
		// Not recorded (bridged before senders were stored, or past retention): the
		// reaction is most likely to the user's own message, as a guess.
		sender := s.ownJID()
		if from, ok := s.senderOf(ctx, string(r.Chat.ChatID), string(r.ReactionTarget)); ok {
			sender = from
		}
		_, err = s.send(ctx, chat, s.client.BuildReaction(chat, sender, types.MessageID(r.ReactionTarget), ""), "")
		return err
	}
	for _, target := range r.TargetIDs {
		if _, err = s.send(ctx, chat, s.client.BuildRevoke(chat, s.ownJID(), types.MessageID(target)), ""); err != nil {
			return err
		}
	}
	return nil
}

// SendReaction implements bridge.ReactingSession. WhatsApp keeps one reaction per
// person and message, so a second one replaces the first there.
func (s *session) SendReaction(ctx context.Context, r *bridge.MatrixReaction) (bridge.RemoteMessageID, error) {
	if err := s.ready(); err != nil {
		return "", err
	}
	chat, err := s.chatJID(r.Chat)
	if err != nil {
		return "", err
	}
	sender := s.participantOf(r.TargetSender)
	if from, ok := s.senderOf(ctx, string(r.Chat.ChatID), string(r.TargetID)); ok {
		sender = from // as WhatsApp knows it (a hidden ID in some groups)
	}
	res, err := s.send(ctx, chat, s.client.BuildReaction(chat, sender, types.MessageID(r.TargetID), r.Emoji), r.TxnID)
	if err != nil {
		return "", err
	}
	return bridge.RemoteMessageID(string(res.RemoteIDs[0])), nil
}

// SendTyping implements bridge.TypingSession.
func (s *session) SendTyping(ctx context.Context, chat bridge.PortalKey, typing bool) error {
	jid, err := s.chatJID(chat)
	if err != nil || !s.client.IsConnected() {
		return err
	}
	state := types.ChatPresencePaused
	if typing {
		state = types.ChatPresenceComposing
		// WhatsApp shows typing only from clients marked online (the bridge is offline
		// otherwise, so the phone keeps its notifications).
		if err := s.client.SendPresence(ctx, types.PresenceAvailable); err != nil {
			return err
		}
	}
	return s.client.SendChatPresence(ctx, jid, state, types.ChatPresenceMediaText)
}

// SendReceipt implements bridge.ReceiptSession: reading on Matrix marks the chat read
// on the phone too.
func (s *session) SendReceipt(ctx context.Context, chat bridge.PortalKey, upTo bridge.RemoteMessageID) error {
	jid, err := s.chatJID(chat)
	if err != nil || !s.client.IsConnected() {
		return err
	}
	sender := jid
	if !isDMChat(jid) {
		var ok bool
		if sender, ok = s.senderOf(ctx, string(chat.ChatID), string(upTo)); !ok {
			// WhatsApp needs the sender for group receipts; not recorded (bridged before
			// senders were stored, or past retention).
			return nil
		}
		if s.isOwn(ctx, sender) {
			// The user's own message: there is nothing of theirs to mark read.
			return nil
		}
	}
	return s.client.MarkRead(ctx, []types.MessageID{types.MessageID(upTo)}, time.Now(), jid, sender)
}
