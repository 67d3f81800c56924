package whatsapp

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"sync"

	"go.mau.fi/util/dbutil"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
)

const connectorName = "whatsapp"

// upgradeFiles holds the migrations of the connector's own tables, which
// bridge.OpenTables versions in whatsapp_version, apart from whatsmeow's
// whatsmeow_version.
//
//go:embed upgrades/*.sql
var upgradeFiles embed.FS

// Connector is the double-puppet WhatsApp connector: each Matrix user links their own
// WhatsApp account as a device, and their chats become portals only they are in.
type Connector struct {
	host      bridge.Host
	cfg       *Config
	store     *sqlstore.Container
	newClient ClientFactory
	// db is the connector's own handle on the bridge database, opened once at Init and
	// shared by the stores below: it versions the connector's tables in
	// whatsapp_version (see bridge.OpenTables and upgradeFiles).
	db      *dbutil.Database
	timers  *disappearing
	senders *senderStore

	runCtx context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// sessions are the live sessions by login ID.
	sessions map[string]*session
	// handoff holds the connected client of a pairing that just succeeded, by device
	// JID, until the core loads the new login: reconnecting with a second client for
	// the same device would make WhatsApp drop one of them.
	handoff map[string]*handoff
	// outdatedTold: the admins were told WhatsApp refuses this version.
	outdatedTold bool
}

// Option changes how a Connector is built.
type Option func(*Connector)

// WithClientFactory replaces the whatsmeow client (test builds talk to a fake network).
func WithClientFactory(f ClientFactory) Option { return func(c *Connector) { c.newClient = f } }

// New returns an unconfigured connector.
func New(opts ...Option) *Connector {
	c := &Connector{newClient: NewRealClient, sessions: map[string]*session{}, handoff: map[string]*handoff{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Info implements bridge.Network.
func (c *Connector) Info() bridge.NetworkInfo {
	return bridge.NetworkInfo{
		Name: connectorName, DisplayName: "WhatsApp", ProtocolID: "whatsapp",
	}
}

// Init implements bridge.Network: it opens whatsmeow's session store on the bridge's
// database and the connector's own tables.
func (c *Connector) Init(ctx context.Context, host bridge.Host, node *yaml.Node) error {
	cfg, err := parseConfig(node)
	if err != nil {
		return err
	}
	c.host, c.cfg = host, cfg
	if c.store, err = openContainer(ctx, host.Database(), *host.Log()); err != nil {
		return err
	}
	log := dbutil.ZeroLogger(host.Log().With().Str("db_section", connectorName).Logger())
	if c.db, err = bridge.OpenTables(ctx, host.Database(), connectorName, upgradeFiles, log); err != nil {
		return err
	}
	c.timers = newDisappearing(host, c.db)
	c.senders = &senderStore{db: c.db, retention: cfg.SenderRetention.Std()}
	return nil
}

// Start implements bridge.Network.
func (c *Connector) Start(ctx context.Context) error {
	c.runCtx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.timers.run(c.runCtx)
	}()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.senders.run(c.runCtx, c.host)
	}()
	return nil
}

// Stop implements bridge.Network.
func (c *Connector) Stop(ctx context.Context) {
	c.mu.Lock()
	sessions := make([]*session, 0, len(c.sessions))
	for _, s := range c.sessions {
		sessions = append(sessions, s)
	}
	pending := c.handoff
	c.handoff = map[string]*handoff{}
	c.mu.Unlock()
	for _, s := range sessions {
		s.Disconnect()
	}
	for _, h := range pending {
		h.client.Disconnect()
	}
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
}

// LoginFlows implements bridge.Network.
func (c *Connector) LoginFlows() []bridge.LoginFlow {
	return []bridge.LoginFlow{
		{ID: "qr", Name: "QR code", Description: "`login whatsapp`: scan a QR code with WhatsApp on your phone"},
		{ID: "phone", Name: "Pairing code", Description: "`login whatsapp <phone number>`: type a code into WhatsApp on your phone"},
	}
}

// StartLogin implements bridge.Network. A phone number picks the pairing-code flow.
func (c *Connector) StartLogin(ctx context.Context, user id.UserID, flowID string, args []string) (bridge.LoginProcess, error) {
	if flowID == "" || flowID == "qr" {
		if len(args) > 0 {
			flowID = "phone"
		} else {
			flowID = "qr"
		}
	}
	device := c.store.NewDevice()
	client := c.newClient(device, c.waLogger(user.String()))
	hook := func(cli Client, jid types.JID) (string, error) { return c.paired(ctx, user, cli, jid) }
	outdated := func() { c.outdated(c.runCtxOr()) }
	switch flowID {
	case "qr":
		l := newQRLogin(client)
		l.paired, l.outdated = hook, outdated
		return l, nil
	case "phone":
		if len(args) == 0 {
			return nil, bridge.NewUserError("give your phone number in international form: `login whatsapp +33612345678`")
		}
		l := newPairLogin(client, args[0])
		l.paired, l.outdated = hook, outdated
		return l, nil
	default:
		return nil, bridge.NewUserError("unknown WhatsApp login flow %q (use `qr` or a phone number)", flowID)
	}
}

// paired runs when a phone accepted the bridge as a linked device. An account already
// linked by another Matrix user is refused (and the new link undone); one linked
// before by the same user replaces its old link.
func (c *Connector) paired(ctx context.Context, user id.UserID, client Client, device types.JID) (string, error) {
	logins, err := c.host.Logins(ctx)
	if err != nil {
		return "", err
	}
	lid := loginID(device)
	note := ""
	for _, l := range logins {
		if l.ID != lid {
			continue
		}
		if l.UserMXID != user {
			_ = client.Logout(ctx)
			return "", bridge.NewUserError("this WhatsApp account is already linked to the bridge by another Matrix user; the new link was removed")
		}
		c.unlinkOldDevice(ctx, l, device)
		note = " This replaces the account's previous link to the bridge."
	}
	h := newHandoff(client)
	c.mu.Lock()
	c.handoff[device.String()] = h
	c.mu.Unlock()
	return note, nil
}

// unlinkOldDevice removes the previous device of a login that is being linked again.
func (c *Connector) unlinkOldDevice(ctx context.Context, l *bridge.Login, newDevice types.JID) {
	log := c.host.Log().With().Str("login_id", string(l.ID)).Logger()
	c.mu.Lock()
	old := c.sessions[string(l.ID)]
	c.mu.Unlock()
	if old != nil && old.deviceJID != newDevice {
		old.replaced()
		if err := old.client.Logout(ctx); err != nil {
			log.Debug().Err(err).Msg("Unlinking the replaced device failed; deleting it locally")
			if dev := old.client.Device(); dev != nil && dev.ID != nil {
				_ = dev.Delete(ctx)
			}
		}
	}
}

// LoadLogin implements bridge.Network.
func (c *Connector) LoadLogin(ctx context.Context, login *bridge.Login) (bridge.Session, error) {
	var meta loginMetadata
	if len(login.Metadata) > 0 {
		if err := json.Unmarshal(login.Metadata, &meta); err != nil {
			return nil, fmt.Errorf("whatsapp: decoding login metadata: %w", err)
		}
	}
	deviceJID, err := types.ParseJID(meta.DeviceJID)
	if err != nil || meta.DeviceJID == "" {
		return nil, fmt.Errorf("whatsapp: login %s has no device", login.ID)
	}
	c.mu.Lock()
	pending := c.handoff[deviceJID.String()]
	delete(c.handoff, deviceJID.String())
	c.mu.Unlock()
	var client Client
	if pending != nil {
		client = pending.client
	} else {
		device, err := c.store.GetDevice(ctx, deviceJID)
		if err != nil {
			return nil, fmt.Errorf("whatsapp: loading device %s: %w", deviceJID, err)
		}
		if device == nil {
			// The phone unlinked the device while the bridge was down, or the store was
			// wiped: the session cannot come back without a new login.
			device = c.store.NewDevice()
		}
		client = c.newClient(device, c.waLogger(login.UserMXID.String()))
	}
	s := newSession(c, login, deviceJID, client)
	if pending != nil {
		// The pairing's handler already holds whatsmeow's events for this session.
		s.handler = pending.handler
		pending.attach(s.handleEvent)
	}
	c.mu.Lock()
	c.sessions[string(login.ID)] = s
	c.mu.Unlock()
	return s, nil
}

// forget drops a session from the live set (after logout).
func (c *Connector) forget(s *session) {
	c.mu.Lock()
	if c.sessions[string(s.login.ID)] == s {
		delete(c.sessions, string(s.login.ID))
	}
	c.mu.Unlock()
}

// sessionFor returns the live session of a login.
func (c *Connector) sessionFor(loginID string) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions[loginID]
}

// anySession returns some connected session, for lookups not tied to a login.
func (c *Connector) anySession() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions {
		if s.client.IsConnected() {
			return s
		}
	}
	return nil
}

// waLogger gives whatsmeow a logger that carries the Matrix user; whatsmeow's own
// debug output stays at debug level.
func (c *Connector) waLogger(user string) waLog.Logger {
	log := c.host.Log().With().Str("component", "whatsmeow").Str("user_id", user).Logger()
	return waLog.Zerolog(log)
}

// DMChat implements bridge.DMNetwork: `pm whatsapp +33612345678`, or inviting a ghost.
func (c *Connector) DMChat(ctx context.Context, login *bridge.Login, remoteUser string) (*bridge.ChatInfo, error) {
	s := c.sessionFor(string(login.ID))
	if s == nil {
		return nil, bridge.NewUserError("your WhatsApp login is not running; send `logins` to see its state")
	}
	jid, err := parseGhostID(bridge.RemoteUserID(remoteUser))
	if err != nil {
		phone, perr := normalizePhone(remoteUser)
		if perr != nil {
			return nil, perr
		}
		resp, err := s.client.IsOnWhatsApp(ctx, []string{"+" + phone})
		if err != nil {
			return nil, fmt.Errorf("checking whether +%s is on WhatsApp: %w", phone, err)
		}
		if len(resp) == 0 || !resp[0].IsIn {
			return nil, bridge.NewUserError("+%s is not on WhatsApp", phone)
		}
		jid = resp[0].JID
	}
	dev := s.client.Device()
	jid = canonicalUser(ctx, dev, jid)
	info := s.dmInfo(ctx, jid)
	return info, nil
}

// GhostInfo implements bridge.GhostProfileNetwork: the contact's name and profile picture as
// the first connected login sees them.
func (c *Connector) GhostInfo(ctx context.Context, remoteID bridge.RemoteUserID) (*bridge.GhostInfo, error) {
	jid, err := parseGhostID(bridge.RemoteUserID(remoteID))
	if err != nil {
		return nil, nil
	}
	s := c.anySession()
	if s == nil {
		return &bridge.GhostInfo{Name: fallbackName(jid)}, nil
	}
	info := &bridge.GhostInfo{Name: s.contactName(ctx, jid, "")}
	info.Avatar = s.fetchAvatar(ctx, jid)
	return info, nil
}

// GhostAvatar implements bridge.GhostAvatarNetwork: a new contact's profile picture.
func (c *Connector) GhostAvatar(ctx context.Context, remoteID bridge.RemoteUserID) *bridge.Media {
	jid, err := parseGhostID(bridge.RemoteUserID(remoteID))
	if err != nil {
		return nil
	}
	s := c.anySession()
	if s == nil {
		return nil
	}
	return s.fetchAvatar(ctx, jid)
}

// outdated tells the bridge admins, once per run, that WhatsApp refuses this version.
func (c *Connector) outdated(ctx context.Context) {
	c.mu.Lock()
	first := !c.outdatedTold
	c.outdatedTold = true
	c.mu.Unlock()
	if first {
		c.host.NotifyAdmins(ctx, "WhatsApp refuses this version of the bridge (error 405, client outdated). "+
			"Update Passerelle (it brings a newer whatsmeow) and restart it; WhatsApp logins stay disconnected until then.")
	}
}

// CheckPlumb implements bridge.PlumbCheckingNetwork: WhatsApp chats belong to one login and
// are never plumbed into other rooms.
func (c *Connector) CheckPlumb(ctx context.Context, chat bridge.PortalKey, user id.UserID) error {
	return bridge.NewUserError("WhatsApp chats cannot be plumbed into existing rooms; their portals are created for you")
}

var (
	_ bridge.Network              = (*Connector)(nil)
	_ bridge.DMNetwork            = (*Connector)(nil)
	_ bridge.GhostProfileNetwork  = (*Connector)(nil)
	_ bridge.PlumbCheckingNetwork = (*Connector)(nil)
	_ bridge.GhostAvatarNetwork   = (*Connector)(nil)
)
