package bridge

// The network host: the Host each network connector gets, holding the core's
// per-connector state (ghost and alias templates, logger).

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/passerelle/passerelle/bridge/config"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

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
	arrived := time.Now()
	if evt.Chat.Connector == "" {
		evt.Chat.Connector = ch.info.Name
	}
	if evt.Chat.Connector != ch.info.Name {
		return fmt.Errorf("remote event for connector %q queued by %q", evt.Chat.Connector, ch.info.Name)
	}
	key := remoteQueueKey(evt.Chat)
	droppable := ch.info.DropsWhenBehind && evt.droppable()
	if droppable && ch.br.overflow.shed(ctx, ch, evt, key) {
		ch.br.spool.remove(&ch.log, spoolNamesOf(evt))
		return nil
	}
	// From here the bridge owns the event's spool files: they go when it fails to
	// store the event, or once the stored event is finished.
	stored, files, err := ch.br.spool.spoolEvent(evt)
	if err != nil {
		ch.br.spool.remove(&ch.log, spoolNamesOf(evt))
		return fmt.Errorf("spooling the event's files: %w", err)
	}
	payload, err := json.Marshal(stored)
	if err != nil {
		err = fmt.Errorf("encoding remote event: %w", err)
	} else if !droppable {
		// A chat that outruns the bridge (a flood, a slow homeserver) holds up its own
		// network's reading here, not the bridge's memory or other chats' lanes;
		// where the network cuts off slow readers, shed dropped it above instead.
		if err = ch.br.queue.WaitLane(ctx, key, ch.br.Config.Bridge.MaxQueuePerChat); err != nil {
			err = fmt.Errorf("waiting for the chat's queue: %w", err)
		}
	}
	if err == nil {
		err = ch.store(ctx, key, payload, arrived, string(evt.Type))
	}
	if err != nil {
		ch.br.spool.remove(&ch.log, files)
	}
	return err
}

// store writes a remote event to the queue and hands it to its lane. Storing fails only
// while the database is away: retried, with a capped backoff, for as long as ctx allows.
func (ch *connectorHost) store(ctx context.Context, key string, payload []byte, arrived time.Time, what string) error {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		item, err := ch.br.DB.Enqueue(ctx, key, kindRemote, payload)
		if err == nil {
			item.Accepted = arrived
			ch.br.queue.Push(item)
			return nil
		}
		ch.log.Warn().Err(err).Int("attempt", attempt).Str("remote_event", what).Msg("Storing a remote event failed, retrying")
		select {
		case <-ctx.Done():
			return fmt.Errorf("storing remote event: %w (gave up: %w)", err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// CreateMediaFile implements Host.
func (ch *connectorHost) CreateMediaFile(limit int64) (*MediaFile, error) {
	return ch.br.spool.create(limit)
}

// ReportState implements Host.
func (ch *connectorHost) ReportState(ctx context.Context, loginID LoginID, state SessionState, message string) {
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
func (ch *connectorHost) GhostMXID(remoteID RemoteUserID) id.UserID {
	return id.NewUserID(ch.ghostPrefix+id.EncodeUserLocalpart(string(remoteID))+ch.ghostSuffix, ch.br.Config.Homeserver.Domain)
}

// ParseGhostMXID implements Host.
func (ch *connectorHost) ParseGhostMXID(mxid id.UserID) (RemoteUserID, bool) {
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
	return RemoteUserID(remote), true
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
		out[i] = PortalKey{Connector: r[0], ChatID: ChatID(r[1]), Receiver: LoginID(r[2])}
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
	return ch.br.publicMediaURL(resp.ContentURI, fileName, nil), nil
}

// UpdateLoginMetadata implements Host.
func (ch *connectorHost) UpdateLoginMetadata(ctx context.Context, loginID LoginID, metadata json.RawMessage) error {
	return ch.br.DB.SetLoginMetadata(ctx, ch.info.Name, string(loginID), metadata)
}
