// Package irc is the single-puppet IRC connector: every Matrix user gets their own IRC
// connection (a puppet) on each network they use, IRC users appear as Matrix ghosts,
// and a bot connection per network watches the bridged channels.
//
// One line, one Matrix event: channel traffic is bridged from the bot's connection
// only, so a line seen by many puppets in the same channel is bridged once; puppets
// bridge only their private messages.
package irc

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc/ircconn"
)

// connectorName is the connector's name in portal keys, login IDs and the config.
const connectorName = "irc"

// Connector bridges IRC networks.
type Connector struct {
	host     bridge.Host
	cfg      *Config
	limiter  *ircconn.Limiter
	networks map[string]*network
	// runCtx lives from Start to Stop; connections hang off it.
	runCtx context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns an unconfigured connector.
func New() *Connector { return &Connector{networks: map[string]*network{}} }

// What IRC offers beyond the required contract.
var (
	_ bridge.Network              = (*Connector)(nil)
	_ bridge.AliasNetwork         = (*Connector)(nil)
	_ bridge.ChatResolvingNetwork = (*Connector)(nil)
	_ bridge.DMNetwork            = (*Connector)(nil)
	_ bridge.GhostProfileNetwork  = (*Connector)(nil)
	_ bridge.AutoLoginNetwork     = (*Connector)(nil)
	_ bridge.RelayingNetwork      = (*Connector)(nil)
	_ bridge.PlumbCheckingNetwork = (*Connector)(nil)

	_ bridge.Session              = (*puppet)(nil)
	_ bridge.EditingSession       = (*puppet)(nil)
	_ bridge.RedactingSession     = (*puppet)(nil)
	_ bridge.ReactingSession      = (*puppet)(nil)
	_ bridge.MembershipSession    = (*puppet)(nil)
	_ bridge.RoomMetaSession      = (*puppet)(nil)
	_ bridge.ChatFilteringSession = (*puppet)(nil)
	_ bridge.NativeRelaySession   = (*puppet)(nil)
	_ bridge.NativeRelaySession   = (*botSession)(nil)
)

// Info implements bridge.Network.
func (c *Connector) Info() bridge.NetworkInfo {
	return bridge.NetworkInfo{
		Name: connectorName, DisplayName: "IRC", ProtocolID: "irc",
		// IRC users get a link to the file, never the file.
		FilesAsLinks: true,
		// A server drops the bot's connection, every channel on it, once its send
		// queue overflows: a flooding channel must not hold the connection up.
		DropsWhenBehind: true,
	}
}

// Init implements bridge.Network.
func (c *Connector) Init(ctx context.Context, host bridge.Host, node *yaml.Node) error {
	cfg, err := parseConfig(node)
	if err != nil {
		return err
	}
	c.host, c.cfg = host, cfg
	c.limiter = ircconn.NewLimiter(cfg.ConnectsPerSecond, int(cfg.ConnectsPerSecond)+1)
	for i := range cfg.Networks {
		n := newNetwork(c, &cfg.Networks[i])
		c.networks[n.cfg.Name] = n
	}
	return nil
}

// Start implements bridge.Network: bot connections come up and join their channels:
// those in the config and those bridged since.
func (c *Connector) Start(ctx context.Context) error {
	// The bot must be in every channel that has a room, whichever way it was bridged
	// (config, alias, `join`, plumbing, relay): the database is the record of those.
	linked, err := c.host.LinkedChats(ctx)
	if err != nil {
		return fmt.Errorf("loading bridged IRC channels: %w", err)
	}
	channels := map[string][]string{}
	for _, key := range linked {
		pc, err := parseChatID(key.ChatID)
		if err != nil || pc.channel == "" || c.networks[pc.network] == nil {
			continue
		}
		channels[pc.network] = append(channels[pc.network], pc.channel)
	}
	c.runCtx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for name, n := range c.networks {
		n.start(c.runCtx, channels[name])
	}
	return nil
}

// Stop implements bridge.Network.
func (c *Connector) Stop(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range c.networks {
		wg.Add(1)
		go func(n *network) {
			defer wg.Done()
			n.stop()
		}(n)
	}
	wg.Wait()
	if c.cancel != nil {
		c.cancel()
	}
}

// network returns a configured network by name, or an error naming those that are.
func (c *Connector) network(name string) (*network, error) {
	n := c.networks[name]
	if n == nil {
		names := make([]string, 0, len(c.networks))
		for k := range c.networks {
			names = append(names, k)
		}
		return nil, fmt.Errorf("unknown IRC network %q (configured: %s)", name, strings.Join(names, ", "))
	}
	return n, nil
}

// ChatForAlias implements bridge.AliasNetwork: "libera_#go-nuts" is #go-nuts on libera.
func (c *Connector) ChatForAlias(ctx context.Context, alias string) (*bridge.ChatInfo, error) {
	netName, channel, ok := strings.Cut(alias, "_")
	if !ok || !isChannel(channel) {
		return nil, nil
	}
	n := c.networks[strings.ToLower(netName)]
	if n == nil || !n.cfg.portalsAllowed() {
		return nil, nil
	}
	return n.channelInfo(ctx, channel)
}

// AliasFor implements bridge.AliasNetwork.
func (c *Connector) AliasFor(chat bridge.PortalKey) string {
	p, err := parseChatID(chat.ChatID)
	if err != nil || p.channel == "" {
		return ""
	}
	return p.network + "_" + p.channel
}

// ResolveChat implements bridge.ChatResolvingNetwork: "join irc <network> <#channel>".
func (c *Connector) ResolveChat(ctx context.Context, login *bridge.Login, args []string) (*bridge.ChatInfo, error) {
	if len(args) != 2 || !isChannel(args[1]) {
		return nil, fmt.Errorf("give a network and a channel, e.g. `libera #go-nuts`")
	}
	n, err := c.network(strings.ToLower(args[0]))
	if err != nil {
		return nil, err
	}
	return n.channelInfo(ctx, args[1])
}

// DMChat implements bridge.DMNetwork.
func (c *Connector) DMChat(ctx context.Context, login *bridge.Login, remoteUser string) (*bridge.ChatInfo, error) {
	// "libera bob", "libera/bob", or a ghost's remote ID "libera.bob".
	remoteUser = strings.TrimSpace(remoteUser)
	netName, nick, ok := strings.Cut(remoteUser, " ")
	if !ok {
		netName, nick, ok = strings.Cut(remoteUser, "/")
	}
	if !ok {
		netName, nick, ok = strings.Cut(remoteUser, ".")
	}
	if !ok || nick == "" || isChannel(nick) || strings.ContainsAny(nick, " ,*?!@") {
		return nil, fmt.Errorf("give a network and a nick, e.g. `libera bob`")
	}
	n, err := c.network(strings.ToLower(netName))
	if err != nil {
		return nil, err
	}
	if !n.cfg.dmsAllowed() {
		return nil, fmt.Errorf("private messages are disabled on %s", n.cfg.Name)
	}
	if login == nil || !strings.HasPrefix(string(login.ID), n.cfg.Name+"/") {
		return nil, fmt.Errorf("you have no connection to %s yet: join one of its channels first", n.cfg.Name)
	}
	key := bridge.PortalKey{Connector: connectorName, ChatID: n.pmChatID(nick), Receiver: login.ID}
	return &bridge.ChatInfo{Key: key, Name: nick, IsDM: true, OtherUser: n.userID(nick)}, nil
}

// GhostInfo implements bridge.GhostProfileNetwork.
func (c *Connector) GhostInfo(ctx context.Context, remoteID bridge.RemoteUserID) (*bridge.GhostInfo, error) {
	netName, nick, ok := splitRemoteUser(bridge.RemoteUserID(remoteID))
	if !ok || c.networks[netName] == nil {
		return nil, nil
	}
	return &bridge.GhostInfo{Name: c.networks[netName].displayNick(nick)}, nil
}

// AutoLogin implements bridge.AutoLoginNetwork: a Matrix user's puppet is opened when they
// first need it (joining a portal, sending).
func (c *Connector) AutoLogin(ctx context.Context, user id.UserID, chat bridge.PortalKey) (*bridge.NewLogin, error) {
	p, err := parseChatID(chat.ChatID)
	if err != nil {
		return nil, err
	}
	n, err := c.network(p.network)
	if err != nil || n.cfg.Mode != "puppets" {
		return nil, err
	}
	n.mu.Lock()
	full := len(n.puppets) >= n.cfg.MaxConnections
	n.mu.Unlock()
	if full {
		// The network's connection budget is spent: the user speaks through the relay.
		n.log.Warn().Int("max_connections", n.cfg.MaxConnections).Msg("Puppet limit reached, relaying instead")
		return nil, nil
	}
	return n.newPuppetLogin(user, "", nil), nil
}

// LoadLogin implements bridge.Network.
func (c *Connector) LoadLogin(ctx context.Context, login *bridge.Login) (bridge.Session, error) {
	netName, _, ok := strings.Cut(string(login.ID), "/")
	if !ok {
		return nil, fmt.Errorf("malformed IRC login ID %q", login.ID)
	}
	n, err := c.network(netName)
	if err != nil {
		return nil, err
	}
	return n.loadPuppet(login)
}
