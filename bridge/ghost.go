package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/config"
	"github.com/passerelle/passerelle/bridge/database"
)

// errNoSuchGhost is returned when a connector says a remote user does not exist.
var errNoSuchGhost = errors.New("no such remote user")

// connectorHost is the core's per-connector state and the Host handed to the connector.
// Ghost MXIDs are built from the connector's username template around a reversible
// escaping of the remote ID.
type connectorHost struct {
	br          *Bridge
	conn        Network
	info        NetworkInfo
	log         zerolog.Logger
	ghostPrefix string
	ghostSuffix string
	aliasPrefix string
	aliasSuffix string
	displayname *template.Template
	ghostLocks  keyedMutex
}

func newConnectorHost(br *Bridge, c Network, common config.ConnectorCommon) (*connectorHost, error) {
	info := c.Info()
	ch := &connectorHost{br: br, conn: c, info: info, log: br.Log.With().Str("connector", info.Name).Logger()}
	var ok bool
	if ch.ghostPrefix, ch.ghostSuffix, ok = strings.Cut(common.UsernameTemplate, "{{.}}"); !ok {
		return nil, fmt.Errorf("connectors.%s.username_template: must contain {{.}}", info.Name)
	}
	if ch.aliasPrefix, ch.aliasSuffix, ok = strings.Cut(common.AliasTemplate, "{{.}}"); !ok {
		return nil, fmt.Errorf("connectors.%s.alias_template: must contain {{.}}", info.Name)
	}
	tpl, err := template.New("displayname").Parse(common.DisplaynameTemplate)
	if err != nil {
		return nil, fmt.Errorf("connectors.%s.displayname_template: %w", info.Name, err)
	}
	ch.displayname = tpl
	return ch, nil
}

// QueueRemoteEvent implements Host.
func (ch *connectorHost) QueueRemoteEvent(ctx context.Context, evt *RemoteEvent) error {
	if evt.Chat.Connector == "" {
		evt.Chat.Connector = ch.info.Name
	}
	if evt.Chat.Connector != ch.info.Name {
		return fmt.Errorf("remote event for connector %q queued by %q", evt.Chat.Connector, ch.info.Name)
	}
	payload, err := json.Marshal(evt)
	if err != nil {
		return fmt.Errorf("encoding remote event: %w", err)
	}
	// Storing fails only while the database is away: retried here, with a capped
	// backoff, for as long as the caller's context allows.
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		item, err := ch.br.DB.Enqueue(ctx, remoteQueueKey(evt.Chat), kindRemote, payload)
		if err == nil {
			ch.br.queue.Push(item)
			return nil
		}
		ch.log.Warn().Err(err).Int("attempt", attempt).Str("remote_event", string(evt.Type)).Msg("Storing a remote event failed, retrying")
		select {
		case <-ctx.Done():
			return fmt.Errorf("storing remote event: %w (gave up: %w)", err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// ReportState implements Host.
func (ch *connectorHost) ReportState(ctx context.Context, loginID string, state SessionState, message string) {
	ch.br.reportState(ctx, ch.info.Name, loginID, state, message)
}

// Notify implements Host.
func (ch *connectorHost) Notify(ctx context.Context, user id.UserID, message string) {
	ch.br.notifyUser(ctx, user, message)
}

// NotifyAdmins implements Host.
func (ch *connectorHost) NotifyAdmins(ctx context.Context, message string) {
	ch.log.Error().Str("notice", message).Msg("Telling the bridge admins")
	text := ch.info.DisplayName + ": " + message
	for _, admin := range ch.br.perms.Admins() {
		ch.br.notifyUser(ctx, admin, text)
	}
}

// Database implements Host.
func (ch *connectorHost) Database() *dbutil.Database { return ch.br.DB.Database }

// Log implements Host.
func (ch *connectorHost) Log() *zerolog.Logger { return &ch.log }

// GhostMXID implements Host.
func (ch *connectorHost) GhostMXID(remoteID string) id.UserID {
	return id.NewUserID(ch.ghostPrefix+id.EncodeUserLocalpart(remoteID)+ch.ghostSuffix, ch.br.Config.Homeserver.Domain)
}

// ParseGhostMXID implements Host.
func (ch *connectorHost) ParseGhostMXID(mxid id.UserID) (string, bool) {
	localpart, server, err := mxid.Parse()
	if err != nil || server != ch.br.Config.Homeserver.Domain {
		return "", false
	}
	if !strings.HasPrefix(localpart, ch.ghostPrefix) || !strings.HasSuffix(localpart, ch.ghostSuffix) ||
		len(localpart) < len(ch.ghostPrefix)+len(ch.ghostSuffix)+1 {
		return "", false
	}
	escaped := localpart[len(ch.ghostPrefix) : len(localpart)-len(ch.ghostSuffix)]
	remote, err := id.DecodeUserLocalpart(escaped)
	// The decoder is lenient (=41 decodes to A); only the canonical spelling is ours,
	// or two user IDs would share one ghost.
	if err != nil || id.EncodeUserLocalpart(remote) != escaped {
		return "", false
	}
	return remote, true
}

// Logins implements Host.
func (ch *connectorHost) Logins(ctx context.Context) ([]*Login, error) {
	rows, err := ch.br.DB.LoginsOfConnector(ctx, ch.info.Name)
	if err != nil {
		return nil, err
	}
	out := make([]*Login, len(rows))
	for i, r := range rows {
		out[i] = loginFromRow(r)
	}
	return out, nil
}

// LinkedChats implements Host.
func (ch *connectorHost) LinkedChats(ctx context.Context) ([]PortalKey, error) {
	rows, err := ch.br.DB.LinkedChats(ctx, ch.info.Name)
	if err != nil {
		return nil, err
	}
	out := make([]PortalKey, len(rows))
	for i, r := range rows {
		out[i] = PortalKey{Connector: r[0], ChatID: r[1], Receiver: r[2]}
	}
	return out, nil
}

// PublicTextLink implements Host.
func (ch *connectorHost) PublicTextLink(ctx context.Context, text, fileName string) (string, error) {
	if ch.br.Config.AppService.PublicAddress == "" {
		return "", nil
	}
	// A paste is served to the network by link, outside any room.
	resp, err := ch.br.AS.BotIntent().UploadBytesWithName(ctx, []byte(text), "text/plain; charset=utf-8", fileName)
	if err != nil {
		return "", fmt.Errorf("uploading paste: %w", err)
	}
	return ch.br.publicMediaURL(resp.ContentURI, fileName), nil
}

// UpdateLoginMetadata implements Host.
func (ch *connectorHost) UpdateLoginMetadata(ctx context.Context, loginID string, metadata json.RawMessage) error {
	return ch.br.DB.SetLoginMetadata(ctx, ch.info.Name, loginID, metadata)
}

// ghostIntent returns the intent of a remote user's ghost, registering it and syncing
// its profile when info is given.
func (ch *connectorHost) ghostIntent(ctx context.Context, remoteID string, info *GhostInfo) (*appservice.IntentAPI, error) {
	if info != nil && info.Name == "" && info.Account == "" && info.RealName == "" && info.Avatar == nil {
		info = nil
	}
	if err := ch.ensureGhost(ctx, remoteID, info); err != nil {
		return nil, err
	}
	return ch.br.AS.Intent(ch.GhostMXID(remoteID)), nil
}

// ensureGhost registers a ghost on first use and keeps its display name and avatar in
// step with the remote profile. With a nil info and a connector that can look profiles
// up, it asks the connector (this is how user queries from the homeserver are answered).
func (ch *connectorHost) ensureGhost(ctx context.Context, remoteID string, info *GhostInfo) error {
	if remoteID == "" {
		return fmt.Errorf("%w: empty remote ID", errNoSuchGhost)
	}
	unlock := ch.ghostLocks.Lock(remoteID)
	defer unlock()
	row, err := ch.br.DB.GetGhost(ctx, ch.info.Name, remoteID)
	if err != nil {
		return err
	}
	mxid := ch.GhostMXID(remoteID)
	if row == nil {
		row = &database.GhostRow{Connector: ch.info.Name, RemoteID: remoteID, MXID: mxid.String()}
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
		name = ch.renderDisplayname(ghostName{Name: remoteID, Account: row.Account, RealName: row.RealName})
	}
	if name != row.Name {
		if err = intent.SetDisplayName(ctx, name); err != nil {
			ch.log.Warn().Err(err).Str("ghost", mxid.String()).Msg("Setting ghost display name failed")
		} else {
			row.Name, dirty = name, true
		}
	}
	if info != nil && info.Avatar != nil && len(info.Avatar.Data) > 0 {
		// Profile pictures are public, never room content: uploaded as they are.
		resp, err := ch.br.AS.BotIntent().UploadBytes(ctx, info.Avatar.Data, info.Avatar.MimeType)
		if err == nil && resp.ContentURI.String() != row.AvatarURL {
			if err = intent.SetAvatarURL(ctx, resp.ContentURI); err == nil {
				row.AvatarURL, dirty = resp.ContentURI.String(), true
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
