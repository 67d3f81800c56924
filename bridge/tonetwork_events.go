package bridge

// Matrix → network: events come out of the queue here, in order per room.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

func (br *Bridge) handleMatrixEvent(ctx context.Context, evt *event.Event) error {
	if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
		if !errors.Is(err, event.ErrUnsupportedContentType) {
			zerolog.Ctx(ctx).Debug().Err(err).Msg("Unparseable event content")
			return nil
		}
	}
	mautrix.UpdateStateStore(ctx, br.AS.StateStore, evt)
	if evt.Type == event.StateEncryption && br.cannotReadRoom(ctx, evt.RoomID) {
		return nil // a room the bridge is in turned encryption on
	}
	if evt.Type == event.StateMember {
		if br.crypto != nil {
			// Someone joining or leaving an encrypted room: the next message gets a
			// fresh room key, so a leaver cannot read on and a newcomer can.
			br.crypto.mach.HandleMemberEvent(ctx, evt)
		}
		return br.handleMatrixMember(ctx, evt)
	}
	if br.loops.ShouldIgnore(evt, br.isBridgeUser) {
		return nil
	}
	if evt.Type == event.EventEncrypted {
		return br.handleEncrypted(ctx, evt)
	}
	switch evt.Type {
	case event.EventMessage, event.EventSticker:
		return br.handleMatrixMessage(ctx, evt)
	case event.EventReaction:
		return br.handleMatrixReaction(ctx, evt)
	case event.EventRedaction:
		return br.handleMatrixRedaction(ctx, evt)
	case event.StateRoomName, event.StateTopic:
		return br.handleMatrixRoomMeta(ctx, evt)
	case event.EphemeralEventTyping:
		return br.handleMatrixTyping(ctx, evt)
	case event.EphemeralEventReceipt:
		return br.handleMatrixReceipt(ctx, evt)
	}
	return nil
}

// handleEncrypted decrypts an event in its room's lane and handles what it carried as
// if it had come in clear.
func (br *Bridge) handleEncrypted(ctx context.Context, evt *event.Event) error {
	if br.crypto == nil {
		// Nothing can be said in the room either: a clear notice would be the only
		// clear text in an encrypted room.
		zerolog.Ctx(ctx).Warn().Msg("Encrypted event in a room the bridge cannot read (no encryption): not bridged")
		return nil
	}
	if ok, _ := br.AS.StateStore.IsEncrypted(ctx, evt.RoomID); !ok {
		// The room was encrypted before the bot was in it: learn it before answering.
		br.learnRoom(ctx, evt.RoomID)
	}
	decrypted, err := br.crypto.decrypt(ctx, evt)
	if err != nil {
		return err
	}
	decrypted.Mautrix.WasEncrypted = true
	return br.handleMatrixEvent(ctx, decrypted)
}

// roomContext is what handling an event in a bridged room needs.
type roomContext struct {
	room *database.RoomRow
	ch   *connectorHost
	key  PortalKey
}

func (br *Bridge) bridgedRoom(ctx context.Context, roomID id.RoomID) (*roomContext, error) {
	room, err := br.DB.GetRoom(ctx, roomID.String())
	if err != nil || room == nil {
		return nil, err
	}
	ch := br.connector(room.Connector)
	if ch == nil {
		return nil, nil
	}
	return &roomContext{room: room, ch: ch, key: PortalKey{Connector: room.Connector, ChatID: ChatID(room.ChatID), Receiver: LoginID(room.Receiver)}}, nil
}

// bridgedRoomToNetwork is bridgedRoom for an event going to the network: under
// bridge.encryption.require a room without encryption is refused (only then is the
// room's encryption read: this runs for every event).
func (br *Bridge) bridgedRoomToNetwork(ctx context.Context, roomID id.RoomID) (*roomContext, error) {
	rc, err := br.bridgedRoom(ctx, roomID)
	if err != nil || rc == nil || !br.Config.Bridge.Encryption.Require {
		return rc, err
	}
	if err = br.checkRoomEncryption(ctx, roomID); err != nil {
		return nil, err
	}
	return rc, nil
}

func (br *Bridge) handleMatrixMessage(ctx context.Context, evt *event.Event) error {
	content := evt.Content.AsMessage()
	if evt.Type == event.EventSticker {
		content.MsgType = event.MessageType(event.EventSticker.Type)
	}
	handled, err := br.commands.maybeHandle(ctx, evt, content)
	if handled || err != nil {
		return err
	}
	rc, err := br.bridgedRoomToNetwork(ctx, evt.RoomID)
	if err != nil || rc == nil {
		return err
	}
	if sent, err := br.sentBefore(ctx, rc, evt.ID); err != nil || sent {
		return err
	}
	rt, err := br.senderSession(ctx, rc, evt.Sender)
	if err != nil {
		return err
	}
	sess, relayed := rt.sess, rt.relayed
	sender := br.matrixSender(ctx, evt.RoomID, evt.Sender)
	msg := MatrixMessage{Chat: rc.key, RoomID: evt.RoomID, EventID: evt.ID, TxnID: matrixTxnID(evt.ID),
		Sender: sender, Relayed: relayed}
	if content.RelatesTo != nil {
		if replyTo := content.RelatesTo.GetReplyTo(); replyTo != "" {
			if rows, err := br.DB.MessagesByEvent(ctx, rc.room.RoomID, replyTo.String()); err == nil && len(rows) > 0 {
				msg.ReplyTo = RemoteMessageID(rows[0].RemoteID)
				msg.ReplyToSender = id.UserID(rows[0].SenderMXID)
			}
		}
	}
	if content.RelatesTo != nil && content.RelatesTo.GetReplaceID() != "" {
		return br.handleMatrixEdit(ctx, rc, evt, content, sess, msg)
	}
	neutral, err := br.neutralContent(ctx, rc.ch.info, content)
	if err != nil {
		return err
	}
	defer discardMedia(neutral)
	msg.Content = *neutral
	msg.Content.ReplyTo = msg.ReplyTo
	if err = br.renderRelay(ctx, rc, sess, &msg, func(rf *RelayFormatter) error { return rf.Render(&msg, content) }); err != nil {
		return err
	}
	res, err := sess.SendMessage(ctx, &msg)
	if err != nil {
		if res != nil && len(res.RemoteIDs) > 0 {
			// Part of it went out (some lines of a split message): retrying would repeat
			// those, so record them and tell the sender instead.
			if rerr := br.recordSent(context.WithoutCancel(ctx), rc, evt, res, rt, sentMapping{kind: database.KindMessage}); rerr != nil {
				return rerr
			}
			zerolog.Ctx(ctx).Warn().Err(err).Int("parts_sent", len(res.RemoteIDs)).Msg("Message only partly sent")
			return userErrorf("only part of your message reached %s", rc.ch.info.DisplayName)
		}
		return fmt.Errorf("sending message to %s: %w", rc.ch.info.DisplayName, err)
	}
	return br.recordSent(context.WithoutCancel(ctx), rc, evt, res, rt, sentMapping{kind: database.KindMessage})
}

// renderRelay renders a relayed message through the room's relay format, once: not when
// the session names the sender itself, nor when the room's policy wants no prefix.
func (br *Bridge) renderRelay(ctx context.Context, rc *roomContext, sess Session, msg *MatrixMessage, render func(*RelayFormatter) error) error {
	if !msg.Relayed || br.relaysNatively(sess, msg) {
		return nil
	}
	rf, prefix, err := br.roomRelay(ctx, rc)
	if err != nil || !prefix {
		return err
	}
	return render(rf)
}

// relaysNatively asks a relaying session whether it names the sender of this message
// itself, and marks the message so when it does: the relay format is then never
// rendered, not even to be thrown away.
func (br *Bridge) relaysNatively(sess Session, msg *MatrixMessage) bool {
	ns, ok := sess.(NativeRelaySession)
	msg.RelayNative = ok && ns.RelaysNatively(msg)
	return msg.RelayNative
}

// sentMapping says what a sent Matrix event was, for the message map: a message, or a
// reaction (with the reacted-to remote message and the emoji).
type sentMapping struct {
	kind          string
	target, emoji string
}

// recordSent maps a Matrix event to the remote IDs it became.
func (br *Bridge) recordSent(ctx context.Context, rc *roomContext, evt *event.Event, res *SendResult, rt outRoute, m sentMapping) error {
	if res == nil || len(res.RemoteIDs) == 0 {
		return nil
	}
	kind, target, emoji := m.kind, m.target, m.emoji
	relayLogin := ""
	if rt.relayed {
		relayLogin = string(rt.loginID)
	}
	rows := make([]*database.MessageRow, len(res.RemoteIDs))
	for i, rid := range res.RemoteIDs {
		rows[i] = &database.MessageRow{RoomID: rc.room.RoomID, EventID: evt.ID.String(), Connector: rc.key.Connector,
			ChatID: string(rc.key.ChatID), Receiver: string(rc.key.Receiver), RemoteID: string(rid), Part: i, Kind: kind,
			SenderMXID: evt.Sender.String(), RelayLogin: relayLogin, TargetRemoteID: target, Emoji: emoji}
	}
	// Plumbed twins: the same remote message reaches the other rooms of the chat as a
	// remote event; mapping it here for this room keeps that echo from coming back.
	return br.DB.InsertMessages(ctx, rows...)
}

func (br *Bridge) handleMatrixEdit(ctx context.Context, rc *roomContext, evt *event.Event, content *event.MessageEventContent, sess Session, msg MatrixMessage) error {
	editor, ok := sess.(EditingSession)
	if !ok {
		return userErrorf("%s does not support edits", rc.ch.info.DisplayName)
	}
	targets, err := br.DB.MessagesByEvent(ctx, rc.room.RoomID, content.RelatesTo.GetReplaceID().String())
	if err != nil {
		return err
	} else if len(targets) == 0 {
		return userErrorf("the edited message is not known to the bridge")
	}
	if targets[0].SenderMXID != evt.Sender.String() {
		// Matrix ignores edits by anyone but the sender; so do we.
		return userErrorf("only the original sender can edit a message")
	}
	newContent := content
	if content.NewContent != nil {
		newContent = content.NewContent
	}
	neutral, err := br.neutralContent(ctx, rc.ch.info, newContent)
	if err != nil {
		return err
	}
	defer discardMedia(neutral)
	msg.Content = *neutral
	if err = br.renderRelay(ctx, rc, sess, &msg, func(rf *RelayFormatter) error { return rf.RenderEdit(&msg, newContent) }); err != nil {
		return err
	}
	edit := &MatrixEdit{MatrixMessage: msg}
	for _, t := range targets {
		edit.TargetIDs = append(edit.TargetIDs, RemoteMessageID(t.RemoteID))
	}
	res, err := editor.SendEdit(ctx, edit)
	if err != nil {
		return fmt.Errorf("sending edit: %w", err)
	}
	if res != nil && len(res.RemoteIDs) > 0 {
		return br.recordSent(ctx, rc, evt, res, outRoute{loginID: LoginID(targets[0].RelayLogin), relayed: msg.Relayed}, sentMapping{kind: database.KindMessage})
	}
	return nil
}

func (br *Bridge) handleMatrixReaction(ctx context.Context, evt *event.Event) error {
	rc, err := br.bridgedRoomToNetwork(ctx, evt.RoomID)
	if err != nil || rc == nil {
		return err
	}
	content := evt.Content.AsReaction()
	if sent, err := br.sentBefore(ctx, rc, evt.ID); err != nil || sent {
		return err
	}
	targets, err := br.DB.MessagesByEvent(ctx, rc.room.RoomID, content.RelatesTo.EventID.String())
	if err != nil {
		return err
	} else if len(targets) == 0 {
		return userErrorf("the message you reacted to is not known to the bridge")
	}
	rt, err := br.senderSession(ctx, rc, evt.Sender)
	if err != nil {
		return err
	}
	sess := rt.sess
	if rt.relayed {
		// A shared account cannot react on someone's behalf: relay policy drops it, or
		// says it in words where the room asks for that.
		return br.relayReactionText(ctx, rc, evt, sess, targets[0].RemoteID)
	}
	reactor, ok := sess.(ReactingSession)
	if !ok {
		return userErrorf("%s does not support reactions", rc.ch.info.DisplayName)
	}
	remoteID, err := reactor.SendReaction(ctx, &MatrixReaction{Chat: rc.key, RoomID: evt.RoomID, EventID: evt.ID,
		TxnID: matrixTxnID(evt.ID), Sender: br.matrixSender(ctx, evt.RoomID, evt.Sender),
		TargetID: RemoteMessageID(targets[0].RemoteID), TargetSender: id.UserID(targets[0].SenderMXID), Emoji: content.RelatesTo.Key})
	if err != nil {
		return fmt.Errorf("sending reaction: %w", err)
	}
	if remoteID == "" {
		remoteID = RemoteMessageID("reaction:" + evt.ID.String())
	}
	return br.recordSent(ctx, rc, evt, &SendResult{RemoteIDs: []RemoteMessageID{remoteID}}, rt,
		sentMapping{kind: database.KindReaction, target: targets[0].RemoteID, emoji: content.RelatesTo.Key})
}

func (br *Bridge) handleMatrixRedaction(ctx context.Context, evt *event.Event) error {
	rc, err := br.bridgedRoomToNetwork(ctx, evt.RoomID)
	if err != nil || rc == nil {
		return err
	}
	target := evt.Redacts
	if target == "" {
		target = evt.Content.AsRedaction().Redacts
	}
	rows, err := br.DB.MessagesByEvent(ctx, rc.room.RoomID, target.String())
	if err != nil {
		return err
	} else if len(rows) == 0 {
		return nil // not a bridged event: nothing to do on the network
	}
	rt, err := br.senderSession(ctx, rc, evt.Sender)
	if err != nil {
		return err
	}
	sess := rt.sess
	if rt.relayed && rows[0].SenderMXID != evt.Sender.String() {
		return userErrorf("a relayed message can only be deleted by its sender")
	}
	redactor, ok := sess.(RedactingSession)
	if !ok {
		return userErrorf("%s does not support deleting messages", rc.ch.info.DisplayName)
	}
	r := &MatrixRedaction{Chat: rc.key, RoomID: evt.RoomID, EventID: evt.ID, Sender: br.matrixSender(ctx, evt.RoomID, evt.Sender)}
	for _, row := range rows {
		r.TargetIDs = append(r.TargetIDs, RemoteMessageID(row.RemoteID))
	}
	if rows[0].Kind == database.KindReaction {
		r.IsReaction, r.Emoji, r.ReactionTarget = true, rows[0].Emoji, RemoteMessageID(rows[0].TargetRemoteID)
	}
	if err = redactor.SendRedaction(ctx, r); err != nil {
		return fmt.Errorf("sending redaction: %w", err)
	}
	return br.DB.DeleteMessagesByEvent(ctx, rc.room.RoomID, target.String())
}

func (br *Bridge) handleMatrixRoomMeta(ctx context.Context, evt *event.Event) error {
	rc, err := br.bridgedRoomToNetwork(ctx, evt.RoomID)
	if err != nil || rc == nil || rc.room.Kind != database.RoomPortal {
		return err
	}
	rt, err := br.senderSession(ctx, rc, evt.Sender)
	if err != nil || rt.relayed {
		return nil
	}
	meta, ok := rt.sess.(RoomMetaSession)
	if !ok {
		return nil
	}
	var name, topic *string
	if evt.Type == event.StateRoomName {
		name = &evt.Content.AsRoomName().Name
	} else {
		topic = &evt.Content.AsTopic().Topic
	}
	return meta.SendRoomMeta(ctx, rc.key, name, topic)
}

func (br *Bridge) handleMatrixTyping(ctx context.Context, evt *event.Event) error {
	rc, err := br.bridgedRoomToNetwork(ctx, evt.RoomID)
	if err != nil || rc == nil {
		return err
	}
	typing := map[id.UserID]bool{}
	for _, u := range evt.Content.AsTyping().UserIDs {
		typing[u] = true
	}
	logins, err := br.DB.LoginsOfConnector(ctx, rc.key.Connector)
	if err != nil {
		return err
	}
	// Only users with their own login can show as typing; relay typing is dropped.
	for _, l := range logins {
		sess := br.session(l.Connector, LoginID(l.LoginID))
		ts, ok := sess.(TypingSession)
		if !ok || !br.sessionReaches(sess, LoginID(l.LoginID), rc.key) {
			continue
		}
		_ = ts.SendTyping(ctx, rc.key, typing[id.UserID(l.MXID)])
	}
	return nil
}

func (br *Bridge) handleMatrixReceipt(ctx context.Context, evt *event.Event) error {
	rc, err := br.bridgedRoomToNetwork(ctx, evt.RoomID)
	if err != nil || rc == nil {
		return err
	}
	receipts := *evt.Content.AsReceipt()
	for eventID, types := range receipts {
		for userID := range types[event.ReceiptTypeRead] {
			if br.isBridgeUser(userID) || br.ownReceipts.Take(userID.String()+"|"+eventID.String()) {
				continue
			}
			rows, err := br.DB.MessagesByEvent(ctx, rc.room.RoomID, eventID.String())
			if err != nil || len(rows) == 0 {
				continue
			}
			logins, err := br.DB.LoginsOfUser(ctx, userID.String())
			if err != nil {
				return err
			}
			for _, l := range logins {
				if l.Connector != rc.key.Connector {
					continue
				}
				sess := br.session(l.Connector, LoginID(l.LoginID))
				if rs, ok := sess.(ReceiptSession); ok && br.sessionReaches(sess, LoginID(l.LoginID), rc.key) {
					_ = rs.SendReceipt(ctx, rc.key, RemoteMessageID(rows[len(rows)-1].RemoteID))
				}
			}
		}
	}
	return nil
}

// stateStore is the SQL state store the appservice was created with.
func (br *Bridge) stateStore() *stateStore {
	return br.AS.StateStore.(*stateStore)
}

// matrixTxnID is the stable network-side idempotency key of a Matrix event.
func matrixTxnID(eventID id.EventID) string {
	return "mx" + strings.TrimPrefix(eventID.String(), "$")
}

// matrixSender fills in the display names relay formats need.
// sentBefore says whether a Matrix event was already sent to the network by an
// earlier attempt (cut short by a restart, or failing after its effect).
func (br *Bridge) sentBefore(ctx context.Context, rc *roomContext, eventID id.EventID) (bool, error) {
	if !mayHaveRun(ctx) {
		return false, nil
	}
	existing, err := br.DB.MessagesByEvent(ctx, rc.room.RoomID, eventID.String())
	return len(existing) > 0, err
}

func (br *Bridge) matrixSender(ctx context.Context, roomID id.RoomID, user id.UserID) MatrixSender {
	s := MatrixSender{MXID: user}
	if member, err := br.AS.StateStore.GetMember(ctx, roomID, user); err == nil && member != nil && member.Displayname != "" {
		s.DisplayName = member.Displayname
	} else if profile, err := br.AS.BotIntent().GetProfile(ctx, user); err == nil && profile.DisplayName != "" {
		s.DisplayName = profile.DisplayName
	} else {
		s.DisplayName = user.Localpart()
	}
	s.Disambiguated = s.DisplayName
	if members, err := br.stateStore().JoinedMembers(ctx, roomID); err == nil {
		for other, m := range members {
			// Only other Matrix users: a contact who shares the name is told apart on
			// the network already, and must not learn the user's Matrix ID.
			if _, _, ghost := br.ghostConnector(other); other != user && !ghost && m != nil && m.Displayname == s.DisplayName {
				s.Disambiguated = fmt.Sprintf("%s (%s)", s.DisplayName, user)
				break
			}
		}
	}
	return s
}

// neutralContent turns Matrix message content into the network-neutral form, fetching
// media (for networks that take files, not links) so connectors never talk to the
// homeserver. The caller discards the fetched file (discardMedia) once sent.
func (br *Bridge) neutralContent(ctx context.Context, info NetworkInfo, content *event.MessageEventContent) (*MessageContent, error) {
	mc := &MessageContent{MsgType: content.MsgType, Body: content.Body, GeoURI: content.GeoURI}
	if content.Format == event.FormatHTML {
		mc.FormattedBody = content.FormattedBody
	}
	if content.Mentions != nil {
		for _, u := range content.Mentions.UserIDs {
			if ch, remote, ok := br.ghostConnector(u); ok && ch != nil {
				mc.Mentions = append(mc.Mentions, RemoteUserID(remote))
			}
		}
	}
	switch content.MsgType {
	case event.MsgImage, event.MsgVideo, event.MsgAudio, event.MsgFile, event.MessageType(event.EventSticker.Type):
		mxc := content.URL
		if content.File != nil {
			mxc = content.File.URL // an encrypted attachment (an encrypted room)
		}
		if mxc == "" {
			return mc, nil
		}
		uri, err := mxc.Parse()
		if err != nil {
			return nil, userErrorf("the media URL is malformed")
		}
		mc.Media = &Media{FileName: content.GetFileName(), URL: mxc,
			PublicURL: br.publicMediaURL(uri, content.GetFileName(), content.File), Voice: content.MSC3245Voice != nil}
		if content.Info != nil {
			mc.Media.Size = content.Info.Size // as the sender declared it, until the file is read
		}
		if !info.FilesAsLinks {
			f, size, err := br.downloadMedia(ctx, uri, mc.Media.Size, content.File)
			if err != nil {
				return nil, err
			}
			mc.Media.Reader, mc.Media.Size = f, int(size)
		}
		if content.Info != nil {
			mc.Media.MimeType = content.Info.MimeType
			mc.Media.Width, mc.Media.Height, mc.Media.DurationMS = content.Info.Width, content.Info.Height, content.Info.Duration
		}
	}
	return mc, nil
}
