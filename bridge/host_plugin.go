package bridge

// The plugin host: what plugins (relaybot) may do, mostly to linked rooms.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// pluginHost is the core's per-plugin state and the PluginHost handed to the plugin.
type pluginHost struct {
	br     *Bridge
	plugin Plugin
	info   PluginInfo
	log    zerolog.Logger
}

var _ PluginHost = (*pluginHost)(nil)

// Database implements PluginHost.
func (ph *pluginHost) Database() *dbutil.Database { return ph.br.DB.Database }

// Log implements PluginHost.
func (ph *pluginHost) Log() *zerolog.Logger { return &ph.log }

// Started implements PluginHost.
func (ph *pluginHost) Started() <-chan struct{} { return ph.br.ready }

// SetRoomRelay implements PluginHost.
func (ph *pluginHost) SetRoomRelay(ctx context.Context, roomID id.RoomID, connector string, loginID LoginID, opts *RelayOptions) error {
	room, err := ph.br.DB.GetRoom(ctx, roomID.String())
	if err != nil {
		return err
	} else if room == nil || room.Connector != connector {
		return fmt.Errorf("room %s is not linked to a %s chat", roomID, connector)
	}
	options := ""
	if opts != nil {
		data, err := json.Marshal(opts)
		if err != nil {
			return fmt.Errorf("encoding relay options: %w", err)
		}
		options = string(data)
	}
	return ph.br.DB.SetRoomRelay(ctx, roomID.String(), string(loginID), options)
}

// InviteUser implements PluginHost.
func (ph *pluginHost) InviteUser(ctx context.Context, roomID id.RoomID, user id.UserID, powerLevel int) error {
	bot := ph.br.AS.BotIntent()
	if powerLevel >= 0 {
		// Power first: an assignee who joins at once already has it.
		if _, err := bot.SetPowerLevel(ctx, roomID, user, powerLevel); err != nil {
			return fmt.Errorf("giving %s power level %d: %w", user, powerLevel, err)
		}
	}
	if err := bot.EnsureInvited(ctx, roomID, user); err != nil {
		return fmt.Errorf("inviting %s: %w", user, err)
	}
	return nil
}

// RestrictInvites implements PluginHost.
func (ph *pluginHost) RestrictInvites(ctx context.Context, roomID id.RoomID, level int) error {
	bot := ph.br.AS.BotIntent()
	pl, err := bot.PowerLevels(ctx, roomID)
	if err != nil {
		return fmt.Errorf("reading power levels: %w", err)
	}
	if pl.Invite() == level {
		return nil
	}
	pl.InvitePtr = &level
	if _, err = bot.SetPowerLevels(ctx, roomID, pl); err != nil {
		return fmt.Errorf("restricting invites: %w", err)
	}
	return nil
}

// RemoveUser implements PluginHost.
func (ph *pluginHost) RemoveUser(ctx context.Context, roomID id.RoomID, user id.UserID, reason string) error {
	if _, err := ph.br.AS.BotIntent().KickUser(ctx, roomID, &mautrix.ReqKickUser{UserID: user, Reason: reason}); err != nil {
		return fmt.Errorf("removing %s: %w", user, err)
	}
	return nil
}

// RoomNotice implements PluginHost.
func (ph *pluginHost) RoomNotice(ctx context.Context, roomID id.RoomID, text, html string) error {
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: text}
	if html != "" {
		content.Format, content.FormattedBody = event.FormatHTML, html
	}
	_, err := ph.br.sendEvent(ctx, ph.br.AS.BotIntent(), roomID, event.EventMessage, content, "", time.Time{})
	return err
}

// SendToRemote implements PluginHost.
func (ph *pluginHost) SendToRemote(ctx context.Context, chat PortalKey, loginID LoginID, text string) error {
	sess := ph.br.session(chat.Connector, loginID)
	if sess == nil {
		return fmt.Errorf("the %s login %s is not running", chat.Connector, loginID)
	}
	// A stable transaction ID lets networks that deduplicate by it drop a retry.
	sum := sha256.Sum256([]byte(chat.String() + "\x00" + string(loginID) + "\x00" + text))
	_, err := sess.SendMessage(ctx, &MatrixMessage{Chat: chat, TxnID: "host-" + hex.EncodeToString(sum[:12]),
		Content: MessageContent{MsgType: event.MsgText, Body: text}})
	return err
}

// JoinRoom implements PluginHost.
func (ph *pluginHost) JoinRoom(ctx context.Context, roomIDOrAlias string) (id.RoomID, error) {
	resp, err := ph.br.AS.BotIntent().JoinRoom(ctx, roomIDOrAlias, nil)
	if err != nil {
		return "", fmt.Errorf("joining %s: %w", roomIDOrAlias, err)
	}
	return resp.RoomID, nil
}

// JoinedUsers implements PluginHost.
func (ph *pluginHost) JoinedUsers(ctx context.Context, roomID id.RoomID) ([]id.UserID, error) {
	members, err := ph.br.AS.BotIntent().JoinedMembers(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("listing members of %s: %w", roomID, err)
	}
	var users []id.UserID
	for user := range members.Joined {
		if user == ph.br.BotMXID() {
			continue
		}
		if _, _, ghost := ph.br.ghostConnector(user); ghost {
			continue
		}
		users = append(users, user)
	}
	return users, nil
}

// CreateRoom implements PluginHost.
func (ph *pluginHost) CreateRoom(ctx context.Context, name, topic string, invite []id.UserID) (id.RoomID, error) {
	resp, err := ph.br.AS.BotIntent().CreateRoom(ctx, &mautrix.ReqCreateRoom{Visibility: "private", Preset: "private_chat",
		Name: name, Topic: topic, Invite: invite})
	if err != nil {
		return "", fmt.Errorf("creating room %q: %w", name, err)
	}
	return resp.RoomID, nil
}

// CloseRoom implements PluginHost.
func (ph *pluginHost) CloseRoom(ctx context.Context, roomID id.RoomID, reason string) error {
	room, err := ph.br.DB.GetRoom(ctx, roomID.String())
	if err != nil {
		return err
	} else if room == nil {
		return ErrRoomNotLinked
	}
	target := ph.br.connector(room.Connector)
	rc := &roomContext{room: room, ch: target, key: PortalKey{Connector: room.Connector, ChatID: ChatID(room.ChatID), Receiver: LoginID(room.Receiver)}}
	// The chat's lane must not post into the room while it is being unlinked.
	unlock := ph.br.chatLocks.Lock(rc.key.String())
	err = ph.br.unlinkRoom(ctx, rc, true)
	unlock()
	if err != nil {
		return err
	}
	if _, err = ph.br.AS.BotIntent().LeaveRoom(ctx, roomID, &mautrix.ReqLeave{Reason: reason}); err != nil {
		return fmt.Errorf("leaving the closed room: %w", err)
	}
	return nil
}

// LastActivity implements PluginHost.
func (ph *pluginHost) LastActivity(ctx context.Context, roomID id.RoomID) (time.Time, error) {
	return ph.br.DB.LastActivity(ctx, roomID.String())
}

// portalAllowed asks plugins whether a remote event may create a portal.
func (br *Bridge) portalAllowed(ctx context.Context, p *NewPortal) bool {
	for _, ph := range br.plugins {
		if f, ok := ph.plugin.(PortalFilteringPlugin); ok && !f.AllowPortal(ctx, p) {
			return false
		}
	}
	return true
}

// notifyPortalWatchers tells plugins about a new portal room, then clears
// the room's pending mark.
func (br *Bridge) notifyPortalWatchers(ctx context.Context, p *NewPortal) {
	watched := false
	for _, ph := range br.plugins {
		if w, ok := ph.plugin.(PortalWatchingPlugin); ok {
			w.PortalCreated(ctx, p)
			watched = true
		}
	}
	if watched {
		if err := br.DB.ClearPendingWatch(ctx, p.RoomID.String()); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Stringer("room_id", p.RoomID).Msg("Clearing a portal's pending notification failed")
		}
	}
}

// pendingWatch is what a new portal's room row keeps until plugins were told
// about it ("" when no connector watches portals). The chat picture's bytes are left
// out: watchers do not need them.
func (br *Bridge) pendingWatch(p *NewPortal) string {
	watched := false
	for _, ph := range br.plugins {
		if _, ok := ph.plugin.(PortalWatchingPlugin); ok {
			watched = true
		}
	}
	if !watched {
		return ""
	}
	stored := *p
	if p.Info != nil {
		info := *p.Info
		info.Avatar, info.Members = nil, nil
		stored.Info = &info
	}
	data, err := json.Marshal(&stored)
	if err != nil {
		return ""
	}
	return string(data)
}

// resumePortalWatches tells plugins about the new portals a crash kept them
// from hearing of (the room was made, the telling never happened).
func (br *Bridge) resumePortalWatches(ctx context.Context) {
	pending, err := br.DB.PendingWatches(ctx)
	if err != nil {
		br.Log.Warn().Err(err).Msg("Loading pending portal notifications failed")
		return
	}
	for roomID, payload := range pending {
		var p NewPortal
		if err = json.Unmarshal([]byte(payload), &p); err != nil || p.RoomID.String() != roomID {
			br.Log.Warn().Err(err).Str("room_id", roomID).Msg("Dropping an unreadable pending portal notification")
			_ = br.DB.ClearPendingWatch(ctx, roomID)
			continue
		}
		br.Log.Info().Str("room_id", roomID).Object("portal", p.Key).Msg("Telling plugins about a portal made before a crash")
		br.notifyPortalWatchers(ctx, &p)
	}
}
