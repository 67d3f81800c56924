package bridge

// Portals: Matrix rooms the bridge creates for remote chats. A remote chat may also be
// plumbed into existing rooms (plumb.go); every linked room gets the chat's events.

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

// portalForAlias answers an alias query: it finds or creates the portal of the chat the
// alias names. An empty room ID means the alias is not ours or names no chat.
func (br *Bridge) portalForAlias(ctx context.Context, alias id.RoomAlias) (id.RoomID, error) {
	for _, name := range br.order {
		ch := br.connectors[name]
		rest, ok := ch.parseAlias(alias)
		if !ok {
			continue
		}
		ar, ok := ch.conn.(AliasNetwork)
		if !ok {
			return "", nil
		}
		info, err := ar.ChatForAlias(ctx, rest)
		if err != nil {
			return "", err
		} else if info == nil {
			return "", nil
		}
		info.Key.Connector = name
		roomID, _, err := br.ensurePortalRoom(ctx, ch, info, "", true, TriggerMatrix)
		if err != nil {
			return "", err
		}
		// Another spelling of the same chat (#Go for #go) leads to the same portal: give
		// the room that alias too, so the join that asked for it succeeds.
		if canonical := ch.aliasFor(info.Key); canonical != alias {
			if _, err = br.AS.BotIntent().CreateAlias(ctx, alias, roomID); err != nil {
				return "", fmt.Errorf("adding alias %s to the portal: %w", alias, err)
			}
		}
		return roomID, nil
	}
	return "", nil
}

// ensurePortalRoom returns the chat's portal room, creating it if needed. invite, if set,
// is invited (and, for a new per-login chat, is the room's intended user). withAlias
// gives the room its alias (alias queries create the alias in the same request).
func (br *Bridge) ensurePortalRoom(ctx context.Context, ch *connectorHost, info *ChatInfo, invite id.UserID, withAlias bool, trigger PortalTrigger) (id.RoomID, bool, error) {
	key := info.Key
	var created *NewPortal
	// Policy connectors run after the chat's lock is released (deferred calls run in
	// reverse): their work (invites, a greeting) must not hold up the chat.
	defer func() {
		if created != nil {
			br.notifyPortalWatchers(ctx, created)
		}
	}()
	unlock := br.chatLocks.Lock(key.String())
	defer unlock()
	rooms, err := br.DB.RoomsForChat(ctx, key.Connector, string(key.ChatID), string(key.Receiver))
	if err != nil {
		return "", false, err
	}
	for _, r := range rooms {
		if r.Kind == database.RoomPortal {
			roomID := id.RoomID(r.RoomID)
			if invite != "" {
				if err = br.AS.BotIntent().EnsureInvited(ctx, roomID, invite); err != nil {
					return roomID, false, fmt.Errorf("inviting user to existing portal: %w", err)
				}
			}
			return roomID, false, nil
		}
	}
	portal := &NewPortal{Key: key, Info: info, LoginOwner: ownerIf(key.Receiver != "", invite), Trigger: trigger}
	roomID, err := br.createPortalRoom(ctx, ch, info, invite, withAlias, portal)
	if err != nil {
		return "", false, err
	}
	created = portal
	return roomID, true, nil
}

func (br *Bridge) createPortalRoom(ctx context.Context, ch *connectorHost, info *ChatInfo, invite id.UserID, withAlias bool, portal *NewPortal) (id.RoomID, error) {
	key := info.Key
	log := br.Log.With().Object("portal", key).Logger()
	if err := br.uploadChatAvatar(ctx, info); err != nil {
		log.Warn().Err(err).Msg("Chat avatar not set")
	}
	if err := br.DB.UpsertPortal(ctx, &database.PortalRow{
		Connector: key.Connector, ChatID: string(key.ChatID), Receiver: string(key.Receiver),
		Name: info.Name, Topic: info.Topic, AvatarURL: info.AvatarURL.String(), IsDM: info.IsDM, OtherUser: string(info.OtherUser),
	}); err != nil {
		return "", err
	}
	encrypt := br.crypto != nil && (br.Config.Bridge.Encryption.Default || br.Config.Bridge.Encryption.Require)
	req, dmGhost, err := br.portalRequest(ctx, ch, info, invite, withAlias, encrypt)
	if err != nil {
		return "", err
	}
	roomID, created, err := br.createOrAdopt(ctx, ch, key, req, invite)
	if err != nil {
		return "", err
	}
	log = log.With().Stringer("room_id", roomID).Logger()
	switch {
	case !created:
		br.learnRoom(ctx, roomID) // an adopted room: its encryption and members as they are
	case encrypt:
		// Known at once: the bridge speaks in the room before the homeserver pushes
		// its creation events back, and must never speak there in clear.
		if err = br.AS.StateStore.SetEncryptionEvent(ctx, roomID, &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}); err != nil {
			return "", fmt.Errorf("recording the new portal's encryption: %w", err)
		}
	}
	portal.RoomID = roomID
	if err = br.DB.InsertRoom(ctx, &database.RoomRow{
		RoomID: roomID.String(), Connector: key.Connector, ChatID: string(key.ChatID), Receiver: string(key.Receiver),
		Kind: database.RoomPortal, CreatedBy: invite.String(), PendingWatch: br.pendingWatch(portal),
	}); err != nil {
		return "", err
	}
	log.Info().Msg("Created portal room")
	if invite != "" && key.Receiver != "" {
		// A chat of the user's own account: with double puppeting they are in it at
		// once, as they are on the network, instead of facing an invite.
		if dp := br.doublePuppetIntent(ctx, invite); dp != nil {
			if err = dp.EnsureJoined(ctx, roomID); err != nil {
				log.Warn().Err(err).Msg("Double puppet could not join the new portal")
			}
		}
	}
	if dmGhost != "" {
		if err = br.AS.Intent(dmGhost).EnsureJoined(ctx, roomID); err != nil {
			log.Warn().Err(err).Msg("DM ghost could not join portal")
		}
	}
	ch.joinMembers(ctx, roomID, info.Members)
	return roomID, nil
}

// portalRequest describes a new portal room: bridge info, power levels (the bot, ops,
// the DM's other side), encryption, history visibility, picture, preset, alias and
// invites. A DM's other side gets its ghost first, returned to join it afterwards.
func (br *Bridge) portalRequest(ctx context.Context, ch *connectorHost, info *ChatInfo, invite id.UserID, withAlias, encrypt bool) (*mautrix.ReqCreateRoom, id.UserID, error) {
	key := info.Key
	pl := &event.PowerLevelsEventContent{Users: map[id.UserID]int{br.BotMXID(): 100}, StateDefaultPtr: ptr(50)}
	for _, m := range info.Members {
		if m.PowerLevel != nil {
			pl.Users[ch.GhostMXID(m.RemoteID)] = *m.PowerLevel
		}
	}
	bridgeInfo := br.bridgeInfo(ch, info, "")
	state := func(t event.Type, stateKey string, content any) *event.Event {
		return &event.Event{Type: t, StateKey: ptr(stateKey), Content: event.Content{Parsed: content}}
	}
	req := &mautrix.ReqCreateRoom{
		Visibility: "private",
		Name:       info.Name,
		Topic:      info.Topic,
		InitialState: []*event.Event{
			state(event.StateBridge, bridgeStateKey(key), bridgeInfo),
			state(event.StateHalfShotBridge, bridgeStateKey(key), bridgeInfo),
		},
		PowerLevelOverride: pl,
		IsDirect:           info.IsDM,
		// A shared chat (a channel) is joinable by alias, as the channel is on its
		// network; chats of one login are private.
		Preset: "private_chat",
	}
	if key.Receiver == "" && !info.IsDM {
		req.Preset = "public_chat"
	}
	if encrypt {
		req.InitialState = append(req.InitialState, state(event.StateEncryption, "", &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}))
	}
	if info.JoinedHistoryOnly {
		req.InitialState = append(req.InitialState, state(event.StateHistoryVisibility, "",
			&event.HistoryVisibilityEventContent{HistoryVisibility: event.HistoryVisibilityJoined}))
	}
	if !info.AvatarURL.IsEmpty() {
		req.InitialState = append(req.InitialState, state(event.StateRoomAvatar, "", &event.RoomAvatarEventContent{URL: info.AvatarURL.CUString()}))
	}
	if withAlias {
		if alias := ch.aliasFor(key); alias != "" {
			req.RoomAliasName = strings.TrimPrefix(strings.SplitN(alias.String(), ":", 2)[0], "#")
		}
	}
	if invite != "" {
		req.Invite = []id.UserID{invite}
	}
	var dmGhost id.UserID
	if info.IsDM && info.OtherUser != "" {
		dmGhost = ch.GhostMXID(info.OtherUser)
		if err := ch.ensureGhost(ctx, info.OtherUser, nameInfo(info.Name)); err != nil {
			return nil, "", err
		}
		req.Invite = append(req.Invite, dmGhost)
		pl.Users[dmGhost] = 100
	}
	return req, dmGhost, nil
}

// createOrAdopt creates a portal room as the bot. When its alias is taken by our own
// room (a crash came between a creation and its recording), that room is adopted, or
// the chat could never have a portal again; created is false then.
func (br *Bridge) createOrAdopt(ctx context.Context, ch *connectorHost, key PortalKey, req *mautrix.ReqCreateRoom, invite id.UserID) (id.RoomID, bool, error) {
	bot := br.AS.BotIntent()
	resp, err := bot.CreateRoom(ctx, req)
	if err == nil {
		return resp.RoomID, true, nil
	}
	if errors.Is(err, mautrix.MRoomInUse) && req.RoomAliasName != "" {
		if roomID, ok := br.orphanPortal(ctx, ch, key); ok {
			br.Log.Warn().Object("portal", key).Stringer("room_id", roomID).Msg("Adopting the portal room a crash left unrecorded")
			if invite != "" {
				if err = bot.EnsureInvited(ctx, roomID, invite); err != nil {
					return "", false, fmt.Errorf("inviting user to adopted portal: %w", err)
				}
			}
			return roomID, false, nil
		}
	}
	return "", false, fmt.Errorf("creating portal room: %w", err)
}

// orphanPortal finds the room holding a chat's alias and says whether it is a portal of
// ours for that chat that no row records: the bot is in it and set its bridge info.
func (br *Bridge) orphanPortal(ctx context.Context, ch *connectorHost, key PortalKey) (id.RoomID, bool) {
	alias := ch.aliasFor(key)
	if alias == "" {
		return "", false
	}
	resolved, err := br.AS.BotIntent().ResolveAlias(ctx, alias)
	if err != nil {
		return "", false
	}
	if known, err := br.DB.GetRoom(ctx, resolved.RoomID.String()); err != nil || known != nil {
		return "", false // recorded (for another chat, or a race): not an orphan
	}
	var info event.BridgeEventContent
	if err = br.AS.BotIntent().StateEvent(ctx, resolved.RoomID, event.StateBridge, bridgeStateKey(key), &info); err != nil {
		return "", false
	}
	if info.BridgeBot != br.BotMXID() {
		return "", false
	}
	return resolved.RoomID, true
}

// ownerIf is user when cond holds, else nobody.
func ownerIf(cond bool, user id.UserID) id.UserID {
	if cond {
		return user
	}
	return ""
}

func nameInfo(name string) *GhostInfo {
	if name == "" {
		return nil
	}
	return &GhostInfo{Name: name}
}

func ptr[T any](v T) *T { return &v }

// bridgeStateKey is the state key of a room's m.bridge event.
func bridgeStateKey(k PortalKey) string {
	return "passerelle://" + k.Connector + "/" + string(k.ChatID)
}

// bridgeInfo builds the MSC2346 bridge info of a linked room.
func (br *Bridge) bridgeInfo(ch *connectorHost, info *ChatInfo, creator id.UserID) *event.BridgeEventContent {
	name := info.Name
	if name == "" {
		name = string(info.Key.ChatID)
	}
	return &event.BridgeEventContent{
		BridgeBot: br.BotMXID(),
		Creator:   creator,
		Protocol:  event.BridgeInfoSection{ID: ch.info.ProtocolID, DisplayName: ch.info.DisplayName},
		Channel:   event.BridgeInfoSection{ID: string(info.Key.ChatID), DisplayName: name, Receiver: string(info.Key.Receiver)},
	}
}

// linkedRooms returns the rooms of a chat; for a remote event that may create its
// portal, the portal is created first.
func (br *Bridge) linkedRooms(ctx context.Context, ch *connectorHost, evt *RemoteEvent) ([]*database.RoomRow, error) {
	key := evt.Chat
	rooms, err := br.DB.RoomsForChat(ctx, key.Connector, string(key.ChatID), string(key.Receiver))
	if err != nil {
		return nil, err
	}
	if len(rooms) > 0 || !evt.CreatePortal {
		return rooms, nil
	}
	info := evt.ChatInfo
	if info == nil {
		info = &ChatInfo{Key: key}
	}
	info.Key = key
	var invite id.UserID
	if key.Receiver != "" {
		login, err := br.DB.GetLogin(ctx, key.Connector, string(key.Receiver))
		if err != nil {
			return nil, err
		} else if login != nil {
			invite = id.UserID(login.MXID)
		}
	} else if evt.Sender.Login != "" {
		login, err := br.DB.GetLogin(ctx, key.Connector, string(evt.Sender.Login))
		if err != nil {
			return nil, err
		} else if login != nil {
			invite = id.UserID(login.MXID)
		}
	}
	trigger := TriggerIncoming
	switch {
	case evt.Backfill:
		trigger = TriggerBackfill
	case evt.Sender.IsFromMe:
		trigger = TriggerOwn
	}
	if info.IsDM && trigger == TriggerIncoming && !br.allowNewDM(ctx, ch, evt, invite) {
		return nil, nil
	}
	if !br.portalAllowed(ctx, &NewPortal{Key: key, Info: info, LoginOwner: ownerIf(key.Receiver != "", invite), Trigger: trigger}) {
		zerolog.Ctx(ctx).Debug().Str("trigger", string(trigger)).Msg("A policy declined a portal for this chat; dropping the event")
		return nil, nil
	}
	if _, _, err = br.ensurePortalRoom(ctx, ch, info, invite, true, trigger); err != nil {
		return nil, err
	}
	return br.DB.RoomsForChat(ctx, key.Connector, string(key.ChatID), string(key.Receiver))
}

// allowNewDM applies the limits on new direct-chat rooms to an incoming event that
// would open one; a refusal drops the event and tells the user, once an hour per sender.
func (br *Bridge) allowNewDM(ctx context.Context, ch *connectorHost, evt *RemoteEvent, user id.UserID) bool {
	login := string(evt.Chat.Receiver)
	if login == "" {
		login = string(evt.Sender.Login)
	}
	ok, tell := br.limits.allowDMRoom(ch.info.Name, login, string(evt.Sender.RemoteID))
	if ok {
		return true
	}
	zerolog.Ctx(ctx).Warn().Str("login", login).Msg("Refused a new direct chat: bridge.limits reached for this sender or login")
	if tell && user != "" {
		who := evt.Sender.Name
		if who == "" {
			who = string(evt.Sender.RemoteID)
		}
		br.notifyUser(ctx, user, fmt.Sprintf("%s: %s tried to open a new direct chat with you, but more new chats were opened this hour than the bridge allows (`bridge.limits`). Their messages are not bridged until the limit frees up.",
			ch.info.DisplayName, sanitizeName(who)))
	}
	return false
}
