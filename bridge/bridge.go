package bridge

// Lifecycle: New wires the core from its config, Start brings it up, Stop takes it down
// without losing queued work.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"

	"github.com/passerelle/passerelle/bridge/config"
	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/queue"
)

// Version is the bridge version, reported by the version command and in bridge info.
const Version = "0.1.0"

// Bridge is one running Passerelle: one appservice, several connectors.
type Bridge struct {
	Config *config.Config
	DB     *database.Database
	AS     *appservice.AppService
	Log    zerolog.Logger

	connectors map[string]*connectorHost
	order      []string
	// plugins add policy without a network of their own, in config order.
	plugins  []*pluginHost
	queue    *queue.Queue
	perms    *Permissions
	relay    *RelayFormatter
	loops    *LoopGuard
	commands *CommandProcessor

	sessionsLock sync.RWMutex
	sessions     map[loginKey]Session

	loginsLock sync.Mutex
	// activeLogins are running login flows, one per user.
	activeLogins map[id.UserID]*loginFlowState

	// roomLocks serialises structural changes (creating a portal, plumbing) per chat.
	chatLocks keyedMutex
	// ownReceipts are read receipts the bridge set as users' double puppets, so their
	// echo is not bridged back.
	ownReceipts boundedSet

	// crypto is the bot's end-to-end encryption (nil without a device).
	crypto *cryptoHelper

	// stopping is set once Stop began: login flows ending then keep their marks.
	stopping atomic.Bool

	server *http.Server
	// mediaSlots bounds the media links served at once.
	mediaSlots chan struct{}
	// spool keeps received files on disk until uploaded.
	spool *mediaSpool
	// limits bound what remote traffic creates on Matrix.
	limits *creationLimits
	// overflow holds the chats dropping events because they stayed behind, and
	// roomOverflow the Matrix rooms.
	overflow     *chatOverflow
	roomOverflow *roomOverflow
	// bgCtx lives from Start to Stop, for work of the bridge's own.
	bgCtx    context.Context
	listener net.Listener
	diag     *diagnostics
	metrics  *bridgeMetrics
	ready    chan struct{}
	stopOnce sync.Once
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
}

type loginKey struct {
	connector string
	id        LoginID
}

// New prepares a bridge from its config, registration and the compiled-in networks and
// plugins enabled in the config. It opens the database (running migrations) but starts
// nothing.
func New(ctx context.Context, cfg *config.Config, reg *appservice.Registration, networks []Network, plugins []Plugin, log zerolog.Logger) (*Bridge, error) {
	br := &Bridge{
		Config:       cfg,
		Log:          log,
		connectors:   make(map[string]*connectorHost),
		sessions:     make(map[loginKey]Session),
		activeLogins: make(map[id.UserID]*loginFlowState),
		ready:        make(chan struct{}),
	}
	dbURI := cfg.Database.URI
	if cfg.Database.Type == "sqlite" {
		dbURI = cfg.DatabasePath()
	}
	db, err := database.Open(ctx, cfg.Database.Type, dbURI, cfg.Database.MaxOpenConns, log)
	if err != nil {
		return nil, err
	}
	br.DB = db

	as, err := appservice.CreateFull(appservice.CreateOpts{
		Registration:     reg,
		HomeserverDomain: cfg.Homeserver.Domain,
		HomeserverURL:    cfg.Homeserver.Address,
		StateStore:       newStateStore(sqlstatestore.NewSQLStateStore(db.Database, nil, true)),
	})
	if err != nil {
		return nil, fmt.Errorf("setting up appservice client: %w", err)
	}
	as.Log = log.With().Str("component", "appservice").Logger()
	// The marker put on every event the bridge sends as a user's real account, so the
	// transaction stream recognises it and never bridges it back.
	as.DoublePuppetValue = "passerelle:" + cfg.AppService.ID
	br.AS = as
	if err = as.StateStore.(*stateStore).Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("upgrading state store schema: %w", err)
	}

	br.perms, err = NewPermissions(cfg.Permissions, cfg.Homeserver.Domain)
	if err != nil {
		return nil, err
	}
	br.relay, err = NewRelayFormatter(cfg.Bridge.RelayFormats)
	if err != nil {
		return nil, err
	}
	br.loops, err = NewLoopGuard(cfg, as.DoublePuppetValue)
	if err != nil {
		return nil, err
	}
	br.commands = newCommandProcessor(br)
	br.queue = queue.New(db, br.handleQueueItem, br.queueItemFailed, log.With().Str("component", "queue").Logger())
	br.queue.Retryable = isRetryable
	br.queue.Outage = isHomeserverOutage
	br.spool = &mediaSpool{dir: cfg.Bridge.SpoolDir}
	br.limits = newCreationLimits(cfg.Bridge.Limits)
	br.overflow = newChatOverflow(br)
	br.queue.Finished = br.releaseItemMedia
	br.mediaSlots = make(chan struct{}, max(cfg.AppService.MaxMediaDownloads, 1))
	br.queue.MaxAttempts = queue.AttemptsFor(cfg.Bridge.RetryWindow.Std(), br.queue.Backoff, br.queue.MaxBackoff)
	br.metrics = newBridgeMetrics(br.queue.Len)
	br.roomOverflow = newRoomOverflow(br, br.metrics.matrixDropped)
	br.metrics.timeHomeserverRequests(as.HTTPClient)

	for _, c := range networks {
		info := c.Info()
		common, err := cfg.ConnectorCommon(info.Name)
		if err != nil {
			return nil, err
		}
		ch, err := newConnectorHost(br, c, common)
		if err != nil {
			return nil, err
		}
		br.connectors[info.Name] = ch
		br.order = append(br.order, info.Name)
	}
	for _, name := range br.order {
		ch := br.connectors[name]
		node := cfg.Connectors[name]
		if err = ch.conn.Init(ctx, ch, &node); err != nil {
			return nil, fmt.Errorf("initialising connector %s: %w", name, err)
		}
	}
	for _, p := range plugins {
		info := p.Info()
		ph := &pluginHost{br: br, plugin: p, info: info, log: log.With().Str("plugin", info.Name).Logger()}
		node := cfg.Connectors[info.Name]
		if err = p.Init(ctx, ph, &node); err != nil {
			return nil, fmt.Errorf("initialising plugin %s: %w", info.Name, err)
		}
		if cmds, ok := p.(CommandPlugin); ok {
			if err = br.commands.addConnectorCommands(info.Name, cmds.Commands()); err != nil {
				return nil, err
			}
		}
		br.plugins = append(br.plugins, ph)
	}
	return br, nil
}

// Start opens the appservice listener, starts connectors, loads stored logins and
// resumes unfinished work. It returns once the bridge is serving.
func (br *Bridge) Start(ctx context.Context) error {
	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	bgCtx = br.Log.WithContext(bgCtx)
	br.bgCancel = cancel
	br.bgCtx = bgCtx
	started := time.Now()

	ln, err := net.Listen("tcp", br.Config.AppService.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", br.Config.AppService.Listen, err)
	}
	br.listener = ln
	br.server = &http.Server{
		Handler: br.httpHandler(),
		// The listener faces the internet once public_address is set: a client that
		// sends its request slowly, stops reading or idles is cut off. Media downloads
		// set their own write deadlines as they go (serveMedia).
		ReadHeaderTimeout: httpHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return bgCtx },
	}
	br.bgWG.Add(1)
	go func() {
		defer br.bgWG.Done()
		if err := br.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			br.Log.Error().Err(err).Msg("Appservice HTTP server stopped")
		}
	}()

	if err = br.startDiagnostics(ctx); err != nil {
		return err
	}
	if err = br.ensureBot(ctx); err != nil {
		return err
	}
	if err = br.startCrypto(ctx); err != nil {
		return err
	}
	if br.crypto != nil {
		br.bgWG.Add(1)
		go func() {
			defer br.bgWG.Done()
			br.crypto.syncLoop(bgCtx)
		}()
	}
	for _, name := range br.order {
		if err = br.connectors[name].conn.Start(ctx); err != nil {
			return fmt.Errorf("starting connector %s: %w", name, err)
		}
	}
	for _, ph := range br.plugins {
		if err = ph.plugin.Start(ctx); err != nil {
			return fmt.Errorf("starting plugin %s: %w", ph.info.Name, err)
		}
	}
	if err = br.loadLogins(ctx); err != nil {
		return err
	}
	if err = br.queue.Resume(bgCtx); err != nil {
		return err
	}
	br.bgWG.Add(2)
	go func() {
		defer br.bgWG.Done()
		br.retentionLoop(bgCtx, started)
	}()
	go func() {
		defer br.bgWG.Done()
		// What the previous run was doing when it stopped: the users of interrupted
		// login flows are told, plugins hear of portals made just before.
		br.resumeLoginFlows(bgCtx)
		br.resumePortalWatches(bgCtx)
	}()
	close(br.ready)
	br.Log.Info().Str("listen", ln.Addr().String()).Strs("connectors", br.order).Msg("Bridge started")
	return nil
}

// Stop shuts the bridge down: no new transactions, queued work finishes its current
// item, connectors disconnect. Unfinished queue items stay in the database.
func (br *Bridge) Stop(ctx context.Context) {
	br.stopOnce.Do(func() {
		if br.server != nil {
			_ = br.server.Shutdown(ctx)
		}
		br.stopDiagnostics(ctx)
		br.queue.Stop()
		br.stopping.Store(true)
		br.stopLoginFlows(ctx)
		br.loginsLock.Lock()
		for _, st := range br.activeLogins {
			st.mu.Lock()
			st.cancel()
			st.mu.Unlock()
		}
		br.loginsLock.Unlock()
		br.sessionsLock.Lock()
		for _, s := range br.sessions {
			s.Disconnect()
		}
		br.sessionsLock.Unlock()
		for _, ph := range br.plugins {
			ph.plugin.Stop(ctx)
		}
		for _, name := range br.order {
			br.connectors[name].conn.Stop(ctx)
		}
		if br.bgCancel != nil {
			br.bgCancel()
		}
		br.bgWG.Wait()
		if err := br.DB.Close(); err != nil {
			br.Log.Warn().Err(err).Msg("Closing database failed")
		}
	})
}

// ensureBot registers the bot user and sets its profile.
func (br *Bridge) ensureBot(ctx context.Context) error {
	bot := br.AS.BotIntent()
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if err = bot.EnsureRegistered(ctx); err == nil {
			break
		}
		br.Log.Warn().Err(err).Int("attempt", attempt+1).Msg("Homeserver not reachable yet, retrying")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
	if err != nil {
		return fmt.Errorf("registering bridge bot: %w", err)
	}
	if name := br.Config.AppService.Bot.Displayname; name != "" {
		if err = bot.SetDisplayName(ctx, name); err != nil {
			br.Log.Warn().Err(err).Msg("Setting bot display name failed")
		}
	}
	if avatar := br.Config.AppService.Bot.Avatar; avatar != "" {
		if uri, err := id.ParseContentURI(avatar); err == nil {
			if err = bot.SetAvatarURL(ctx, uri); err != nil {
				br.Log.Warn().Err(err).Msg("Setting bot avatar failed")
			}
		}
	}
	return nil
}

// BotMXID is the bridge bot's user ID.
func (br *Bridge) BotMXID() id.UserID { return br.AS.BotMXID() }

// connector returns the host of a connector by name.
func (br *Bridge) connector(name string) *connectorHost { return br.connectors[name] }

// ghostConnector finds which connector owns a ghost MXID.
func (br *Bridge) ghostConnector(mxid id.UserID) (*connectorHost, string, bool) {
	for _, name := range br.order {
		ch := br.connectors[name]
		if remote, ok := ch.ParseGhostMXID(mxid); ok {
			return ch, string(remote), true
		}
	}
	return nil, "", false
}

// isBridgeUser says whether the MXID belongs to the bridge (bot or any ghost).
func (br *Bridge) isBridgeUser(mxid id.UserID) bool {
	if mxid == br.BotMXID() {
		return true
	}
	_, _, ok := br.ghostConnector(mxid)
	return ok
}
