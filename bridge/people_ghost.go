package bridge

// People, ghosts: remote users' Matrix accounts, registered on first use, profiles
// kept in sync, IDs built from the connector's template around a reversible escaping.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/rs/zerolog"
)

// errNoSuchGhost is returned when a connector says a remote user does not exist.
var errNoSuchGhost = errors.New("no such remote user")

// ghostIntent returns the intent of a remote user's ghost, registering it and syncing
// its profile when info is given.
func (ch *connectorHost) ghostIntent(ctx context.Context, remoteID RemoteUserID, info *GhostInfo) (*appservice.IntentAPI, error) {
	return ch.ghostIntentFor(ctx, remoteID, info, nil)
}

// ghostBudget is asked before a new ghost is registered: it waits for the budget, or
// refuses with an error (see creationLimits).
type ghostBudget func(ctx context.Context) error

// senderBudget charges the ghosts a remote event's sender makes to the event's chat.
func (br *Bridge) senderBudget(evt *RemoteEvent) ghostBudget {
	key := remoteQueueKey(evt.Chat)
	return func(ctx context.Context) error { return br.limits.waitGhost(ctx, key) }
}

// ghostIntentFor is ghostIntent with a budget for a new ghost (nil: none).
func (ch *connectorHost) ghostIntentFor(ctx context.Context, remoteID RemoteUserID, info *GhostInfo, budget ghostBudget) (*appservice.IntentAPI, error) {
	if info != nil && info.Name == "" && info.Account == "" && info.RealName == "" && info.Avatar == nil {
		info = nil
	}
	if err := ch.ensureGhostFor(ctx, remoteID, info, budget); err != nil {
		return nil, err
	}
	return ch.br.AS.Intent(ch.GhostMXID(remoteID)), nil
}

// ensureGhost registers a ghost on first use and keeps its display name and avatar in
// step with the remote profile. With a nil info and a connector that can look profiles
// up, it asks the connector (this is how user queries from the homeserver are answered).
func (ch *connectorHost) ensureGhost(ctx context.Context, remoteID RemoteUserID, info *GhostInfo) error {
	return ch.ensureGhostFor(ctx, remoteID, info, nil)
}

// ensureGhostFor is ensureGhost asking budget before it registers a new ghost.
func (ch *connectorHost) ensureGhostFor(ctx context.Context, remoteID RemoteUserID, info *GhostInfo, budget ghostBudget) error {
	if remoteID == "" {
		return fmt.Errorf("%w: empty remote ID", errNoSuchGhost)
	}
	unlock := ch.ghostLocks.Lock(string(remoteID))
	defer unlock()
	row, err := ch.br.DB.GetGhost(ctx, ch.info.Name, string(remoteID))
	if err != nil {
		return err
	}
	mxid := ch.GhostMXID(remoteID)
	if row == nil {
		if budget != nil {
			if err = budget(ctx); err != nil {
				return err
			}
		}
		row = &database.GhostRow{Connector: ch.info.Name, RemoteID: string(remoteID), MXID: mxid.String()}
		if info == nil {
			if resolver, ok := ch.conn.(GhostProfileNetwork); ok {
				info, err = resolver.GhostInfo(ctx, remoteID)
				if err != nil {
					return fmt.Errorf("looking up remote user: %w", err)
				} else if info == nil {
					return errNoSuchGhost
				}
			}
		}
		if avatarer, ok := ch.conn.(GhostAvatarNetwork); ok && (info == nil || info.Avatar == nil) {
			if avatar := avatarer.GhostAvatar(ctx, remoteID); avatar != nil {
				withAvatar := GhostInfo{Avatar: avatar}
				if info != nil {
					withAvatar = *info
					withAvatar.Avatar = avatar
				}
				info = &withAvatar
			}
		}
	}
	intent := ch.br.AS.Intent(mxid)
	if intent == nil {
		return fmt.Errorf("%w: invalid ghost ID %q", errNoSuchGhost, mxid)
	}
	dirty := false
	if !row.Registered {
		if err = intent.EnsureRegistered(ctx); err != nil {
			return fmt.Errorf("registering ghost: %w", err)
		}
		row.Registered, dirty = true, true
	}
	// Identity details only ever arrive with some events (an IRC JOIN): keep the last
	// known ones so the display name does not flap between events.
	if info != nil && info.Account != "" && info.Account != row.Account {
		row.Account, dirty = info.Account, true
	}
	if info != nil && info.RealName != "" && info.RealName != row.RealName {
		row.RealName, dirty = info.RealName, true
	}
	name := row.Name
	if info != nil && info.Name != "" {
		name = ch.renderDisplayname(ghostName{Name: info.Name, Account: row.Account, RealName: row.RealName})
	} else if name == "" {
		name = ch.renderDisplayname(ghostName{Name: string(remoteID), Account: row.Account, RealName: row.RealName})
	}
	if name != row.Name {
		if err = intent.SetDisplayName(ctx, name); err != nil {
			ch.log.Warn().Err(err).Str("ghost", mxid.String()).Msg("Setting ghost display name failed")
		} else {
			row.Name, dirty = name, true
		}
	}
	if info != nil && info.Avatar != nil && (len(info.Avatar.Data) > 0 || info.Avatar.Spool != "") {
		uri, err := ch.br.uploadPublic(ctx, info.Avatar)
		if err == nil && uri.String() != row.AvatarURL {
			if err = intent.SetAvatarURL(ctx, uri); err == nil {
				row.AvatarURL, dirty = uri.String(), true
			}
		}
		if err != nil {
			ch.log.Warn().Err(err).Str("ghost", mxid.String()).Msg("Setting ghost avatar failed")
		}
	}
	if !dirty {
		return nil
	}
	return ch.br.DB.UpsertGhost(ctx, row)
}

// ghostName is what displayname templates see: {{.}} prints the name (String), and
// {{.Account}} and {{.RealName}} are there when the network gives them.
type ghostName struct {
	Name, Account, RealName string
}

func (g ghostName) String() string { return g.Name }

func (ch *connectorHost) renderDisplayname(g ghostName) string {
	var sb strings.Builder
	if err := ch.displayname.Execute(&sb, g); err != nil || sb.Len() == 0 {
		return g.Name
	}
	return sb.String()
}

// aliasFor builds the full alias of a chat, or "" when the connector has none.
func (ch *connectorHost) aliasFor(chat PortalKey) id.RoomAlias {
	ar, ok := ch.conn.(AliasNetwork)
	if !ok {
		return ""
	}
	rest := ar.AliasFor(chat)
	if rest == "" {
		return ""
	}
	return id.NewRoomAlias(ch.aliasPrefix+rest+ch.aliasSuffix, ch.br.Config.Homeserver.Domain)
}

// parseAlias returns the connector-specific part of an alias in its namespace.
func (ch *connectorHost) parseAlias(alias id.RoomAlias) (string, bool) {
	localpart, server, ok := strings.Cut(strings.TrimPrefix(alias.String(), "#"), ":")
	if !ok || server != ch.br.Config.Homeserver.Domain {
		return "", false
	}
	if !strings.HasPrefix(localpart, ch.aliasPrefix) || !strings.HasSuffix(localpart, ch.aliasSuffix) ||
		len(localpart) <= len(ch.aliasPrefix)+len(ch.aliasSuffix) {
		return "", false
	}
	return localpart[len(ch.aliasPrefix) : len(localpart)-len(ch.aliasSuffix)], true
}

// joinMembers makes a chat's remote members' ghosts and joins them to a room; one that
// fails is logged and skipped, the room stays usable without it.
func (ch *connectorHost) joinMembers(ctx context.Context, roomID id.RoomID, members []ChatMember) {
	for _, m := range members {
		log := zerolog.Ctx(ctx).With().Stringer("room_id", roomID).Str("remote_user", string(m.RemoteID)).Logger()
		intent, err := ch.ghostIntent(ctx, m.RemoteID, &GhostInfo{Name: m.Name})
		if err != nil {
			log.Warn().Err(err).Msg("Creating member ghost failed")
			continue
		}
		if err = intent.EnsureJoined(ctx, roomID); err != nil {
			log.Warn().Err(err).Msg("Member ghost could not join the room")
		}
	}
}
