package loopback

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/loopback/loopnet"
)

// session is one loopnet account logged into the bridge.
type session struct {
	c     *Connector
	login *bridge.Login
}

func (s *session) Connect(ctx context.Context) {
	s.c.host.ReportState(ctx, s.login.ID, bridge.StateConnected, "")
}

func (s *session) Disconnect() {}

func (s *session) Logout(ctx context.Context) error {
	s.c.setLogin(string(s.login.ID), false)
	return nil
}

// base fills in where an event goes: a DM is addressed to its receiver. Every send
// carries a client transaction ID, which is also how the connector knows the network's
// echo of it and drops it.
func (s *session) base(chat bridge.PortalKey, kind, txn string) loopnet.Event {
	if txn == "" {
		txn = "bridge-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	e := loopnet.Event{Kind: kind, Chat: string(chat.ChatID), ClientTxn: txn}
	if chat.Receiver != "" {
		e.DMFor = string(chat.Receiver)
	}
	return e
}

func (s *session) SendMessage(ctx context.Context, msg *bridge.MatrixMessage) (*bridge.SendResult, error) {
	e := s.base(msg.Chat, loopnet.KindMessage, msg.TxnID)
	e.Text, e.HTML, e.MsgType, e.ReplyTo, e.Mentions = msg.Content.Body, msg.Content.FormattedBody, string(msg.Content.MsgType), string(msg.ReplyTo), remoteUsers(msg.Content.Mentions)
	if m := msg.Content.Media; m != nil {
		e.FileName, e.MimeType = m.FileName, m.MimeType
		if m.Reader != nil {
			// loopnet carries files inside its events: a test network, small files.
			data, err := io.ReadAll(m.Reader)
			if err != nil {
				return nil, fmt.Errorf("loopback: reading the file: %w", err)
			}
			e.FileData = data
		}
	}
	id, err := s.c.send(ctx, string(s.login.ID), e)
	if err != nil {
		return nil, err
	}
	return &bridge.SendResult{RemoteIDs: []bridge.RemoteMessageID{bridge.RemoteMessageID(id)}}, nil
}

func (s *session) SendEdit(ctx context.Context, edit *bridge.MatrixEdit) (*bridge.SendResult, error) {
	e := s.base(edit.Chat, loopnet.KindEdit, edit.TxnID)
	e.Text, e.HTML, e.Target = edit.Content.Body, edit.Content.FormattedBody, string(edit.TargetIDs[0])
	_, err := s.c.send(ctx, string(s.login.ID), e)
	return nil, err
}

func (s *session) SendRedaction(ctx context.Context, r *bridge.MatrixRedaction) error {
	kind, target := loopnet.KindRedact, r.TargetIDs[0]
	e := s.base(r.Chat, kind, "mx"+r.EventID.String())
	if r.IsReaction {
		e.Kind, e.Emoji, target = loopnet.KindUnreact, r.Emoji, r.ReactionTarget
	}
	e.Target = string(target)
	_, err := s.c.send(ctx, string(s.login.ID), e)
	return err
}

func (s *session) SendReaction(ctx context.Context, r *bridge.MatrixReaction) (bridge.RemoteMessageID, error) {
	e := s.base(r.Chat, loopnet.KindReact, r.TxnID)
	e.Target, e.Emoji = string(r.TargetID), r.Emoji
	id, err := s.c.send(ctx, string(s.login.ID), e)
	return bridge.RemoteMessageID(id), err
}

func (s *session) SendTyping(ctx context.Context, chat bridge.PortalKey, typing bool) error {
	e := s.base(chat, loopnet.KindTyping, "")
	if !typing {
		e.Text = "stop"
	}
	_, err := s.c.send(ctx, string(s.login.ID), e)
	return err
}

func (s *session) SendReceipt(ctx context.Context, chat bridge.PortalKey, upTo bridge.RemoteMessageID) error {
	e := s.base(chat, loopnet.KindReceipt, "")
	e.Target = string(upTo)
	_, err := s.c.send(ctx, string(s.login.ID), e)
	return err
}

func (s *session) SendMembership(ctx context.Context, m *bridge.MatrixMembership) error {
	kind := loopnet.KindJoin
	if m.Membership != "join" {
		kind = loopnet.KindLeave
	}
	e := s.base(m.Chat, kind, "")
	e.Target = string(m.TargetRemote)
	_, err := s.c.send(ctx, string(s.login.ID), e)
	return err
}

func (s *session) SendRoomMeta(ctx context.Context, chat bridge.PortalKey, name, topic *string) error {
	if topic == nil {
		return nil
	}
	e := s.base(chat, loopnet.KindTopic, "")
	e.Text = *topic
	_, err := s.c.send(ctx, string(s.login.ID), e)
	return err
}

// remoteUsers lists mentioned remote users as loopnet names them.
func remoteUsers(ids []bridge.RemoteUserID) []string {
	out := make([]string, len(ids))
	for i, u := range ids {
		out[i] = string(u)
	}
	return out
}
