// Package relaybot is the relay-room policy: an organisation's shared account on
// another network (an IRC nick, a WhatsApp number) speaks for a team. Every new
// conversation with the account becomes a relay room: relay on, the team's assignees
// invited with their power level, an optional greeting sent once to the contact, and an
// entry in the account's lobby room. Admins of the account assign, unassign, close and
// list conversations with bot commands.
//
// It speaks no network itself: the account is a login of the irc or whatsapp connector,
// and the core's relay carries the messages.
package relaybot

import (
	"context"
	"fmt"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
)

const pluginName = "relaybot"

// Plugin is the relay-room policy.
type Plugin struct {
	host  bridge.PluginHost
	cfg   *Config
	store *store

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// lobbies are the lobby rooms by account name.
	lobbies map[string]id.RoomID
}

// New returns an unconfigured plugin.
func New() *Plugin { return &Plugin{lobbies: map[string]id.RoomID{}} }

var (
	_ bridge.Plugin                = (*Plugin)(nil)
	_ bridge.PortalWatchingPlugin  = (*Plugin)(nil)
	_ bridge.PortalFilteringPlugin = (*Plugin)(nil)
	_ bridge.CommandPlugin         = (*Plugin)(nil)
)

// Info implements bridge.Plugin.
func (c *Plugin) Info() bridge.PluginInfo {
	return bridge.PluginInfo{Name: pluginName, DisplayName: "Relay bot"}
}

// Init implements bridge.Plugin.
func (c *Plugin) Init(ctx context.Context, host bridge.PluginHost, node *yaml.Node) error {
	cfg, err := parseConfig(node)
	if err != nil {
		return err
	}
	c.host, c.cfg = host, cfg
	if c.store, err = newStore(ctx, host.Database()); err != nil {
		return err
	}
	return nil
}

// Start implements bridge.Plugin: the lobby rooms are joined (or made) and closed
// conversations are forgotten after their retention.
func (c *Plugin) Start(ctx context.Context) error {
	for i := range c.cfg.Accounts {
		a := &c.cfg.Accounts[i]
		lobby, err := c.lobbyRoom(ctx, a)
		if err != nil {
			c.host.Log().Warn().Err(err).Str("account", a.Name).Msg("No lobby room for relay account")
			continue
		}
		c.mu.Lock()
		c.lobbies[a.Name] = lobby
		c.mu.Unlock()
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		// Set-ups cut short are finished once the relay accounts' sessions are loaded:
		// their greeting goes out through them.
		select {
		case <-c.host.Started():
			c.finishSetUps(runCtx)
		case <-runCtx.Done():
		}
	}()
	go func() {
		defer c.wg.Done()
		c.sweep(runCtx)
	}()
	return nil
}

// Stop implements bridge.Plugin.
func (c *Plugin) Stop(context.Context) {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
}

// lobbyRoom finds or makes an account's lobby.
func (c *Plugin) lobbyRoom(ctx context.Context, a *AccountConfig) (id.RoomID, error) {
	target := a.LobbyRoom
	if target == "" {
		target = a.TeamRoom
	}
	if target != "" {
		return c.host.JoinRoom(ctx, target)
	}
	if room, err := c.store.lobby(ctx, a.Name); err != nil || room != "" {
		return room, err
	}
	invite := append(append([]id.UserID{}, a.Admins...), a.Assignees...)
	room, err := c.host.CreateRoom(ctx, "Relay lobby: "+a.Name,
		"New conversations with the "+a.Name+" relay account are listed here.", dedupe(invite))
	if err != nil {
		return "", err
	}
	return room, c.store.setLobby(ctx, a.Name, room)
}

// account finds the relay account a new portal belongs to.
func (c *Plugin) account(p *bridge.NewPortal) *AccountConfig {
	if p.Key.Receiver == "" {
		return nil
	}
	for i := range c.cfg.Accounts {
		a := &c.cfg.Accounts[i]
		if a.Network != p.Key.Connector {
			continue
		}
		if a.Login != "" && bridge.LoginID(a.Login) == p.Key.Receiver || a.Login == "" && a.Owner == p.LoginOwner {
			return a
		}
	}
	return nil
}

// AllowPortal implements bridge.PortalFilteringPlugin: a relay account gets rooms for contacts
// who write to it (or chats its owner opens from Matrix), never for the history synced
// at login or for what the account itself sends from elsewhere — that would invite the
// team to every old chat and greet long-gone contacts.
func (c *Plugin) AllowPortal(_ context.Context, p *bridge.NewPortal) bool {
	if c.account(p) == nil {
		return true
	}
	return p.Trigger == bridge.TriggerIncoming || p.Trigger == bridge.TriggerMatrix
}

// PortalCreated implements bridge.PortalWatchingPlugin: a relay account's new conversation
// becomes a relay room.
func (c *Plugin) PortalCreated(ctx context.Context, p *bridge.NewPortal) {
	a := c.account(p)
	if a == nil {
		return
	}
	conv := &conversation{RoomID: p.RoomID, Account: a.Name, Chat: p.Key, Contact: contactName(p),
		Trigger: p.Trigger, LoginOwner: p.LoginOwner}
	// Recorded first: a set-up cut short (a crash, the homeserver away) is finished at
	// the next start.
	if err := c.store.openConversation(ctx, conv); err != nil {
		c.host.Log().Error().Err(err).Str("account", a.Name).Stringer("room_id", p.RoomID).Msg("Recording the conversation failed")
	}
	c.setUp(ctx, a, conv)
}

// setUp makes a conversation's room a relay room: relay on, the team invited at its
// power level, the greeting to a contact who wrote first, the lobby entry. Every step
// may run twice (invites and power are idempotent, the greeting goes once per contact).
func (c *Plugin) setUp(ctx context.Context, a *AccountConfig, conv *conversation) {
	log := c.host.Log().With().Str("account", a.Name).Stringer("room_id", conv.RoomID).Object("portal", conv.Chat).Logger()
	opts := &bridge.RelayOptions{Formats: a.Formats, NoPrefixWhenAlone: a.SingleHandlerNoPrefix, ReactionsAsText: a.Reactions == "text"}
	if err := c.host.SetRoomRelay(ctx, conv.RoomID, conv.Chat.Connector, conv.Chat.Receiver, opts); err != nil {
		log.Error().Err(err).Msg("Turning relay on for a new conversation failed; retried at the next start")
		return
	}
	// Whoever is in the room speaks as the organisation: only the account's admins
	// (through the bot) bring people in, not assignees.
	if err := c.host.RestrictInvites(ctx, conv.RoomID, 100); err != nil {
		log.Warn().Err(err).Msg("Restricting invites failed")
	}
	for _, user := range c.teamOf(ctx, a, conv.LoginOwner) {
		if err := c.host.InviteUser(ctx, conv.RoomID, user, a.powerLevel); err != nil {
			log.Warn().Err(err).Stringer("assignee", user).Msg("Inviting an assignee failed")
			continue
		}
		if err := c.store.addAssignee(ctx, conv.RoomID, user); err != nil {
			log.Warn().Err(err).Msg("Recording an assignee failed")
		}
	}
	if a.Greeting != "" && conv.Trigger == bridge.TriggerIncoming {
		c.greet(ctx, a, conv)
	}
	if lobby := c.lobby(ctx, a); lobby != "" {
		link := conv.RoomID.URI().MatrixToURL()
		text := fmt.Sprintf("New conversation with %s on %s: %s", conv.Contact, a.Name, link)
		html := fmt.Sprintf(`New conversation with <b>%s</b> on %s: <a href="%s">open it</a>`, escape(conv.Contact), escape(a.Name), escape(link))
		if err := c.host.RoomNotice(ctx, lobby, text, html); err != nil {
			log.Warn().Err(err).Msg("Posting the lobby entry failed")
		}
	}
	if err := c.store.markReady(ctx, conv.RoomID); err != nil {
		log.Warn().Err(err).Msg("Recording the finished set-up failed")
	}
	log.Info().Msg("New relay conversation")
}

// finishSetUps completes conversations whose set-up was cut short.
func (c *Plugin) finishSetUps(ctx context.Context) {
	convs, err := c.store.unready(ctx)
	if err != nil {
		c.host.Log().Warn().Err(err).Msg("Reading unfinished relay conversations failed")
		return
	}
	for _, conv := range convs {
		if a := c.accountByName(conv.Account); a != nil {
			c.host.Log().Info().Str("account", a.Name).Stringer("room_id", conv.RoomID).Msg("Finishing the set-up of a relay conversation")
			c.setUp(ctx, a, conv)
		}
	}
}

// lobby returns an account's lobby room, finding or making it when Start could not.
func (c *Plugin) lobby(ctx context.Context, a *AccountConfig) id.RoomID {
	c.mu.Lock()
	room := c.lobbies[a.Name]
	c.mu.Unlock()
	if room != "" {
		return room
	}
	room, err := c.lobbyRoom(ctx, a)
	if err != nil {
		c.host.Log().Warn().Err(err).Str("account", a.Name).Msg("No lobby room for relay account")
		return ""
	}
	c.mu.Lock()
	c.lobbies[a.Name] = room
	c.mu.Unlock()
	return room
}

// greet sends the greeting once per contact, and shows the team it went out.
func (c *Plugin) greet(ctx context.Context, a *AccountConfig, p *conversation) {
	log := c.host.Log().With().Str("account", a.Name).Stringer("room_id", p.RoomID).Logger()
	first, err := c.store.markGreeted(ctx, a.Name, p.Chat)
	if err != nil || !first {
		if err != nil {
			log.Warn().Err(err).Msg("Checking the greeting failed")
		}
		return
	}
	if err = c.host.SendToRemote(ctx, p.Chat, p.Chat.Receiver, a.Greeting); err != nil {
		log.Warn().Err(err).Msg("Sending the greeting failed")
		_ = c.store.unmarkGreeted(ctx, a.Name, p.Chat)
		_ = c.host.RoomNotice(ctx, p.RoomID, "The greeting could not be sent to the contact: "+err.Error(), "")
		return
	}
	_ = c.host.RoomNotice(ctx, p.RoomID, "Greeting sent to the contact: "+a.Greeting, "")
}

// teamOf lists who handles an account's conversations: its assignees and the members
// of its team room, without the relay account's owner.
func (c *Plugin) teamOf(ctx context.Context, a *AccountConfig, owner id.UserID) []id.UserID {
	team := append([]id.UserID{}, a.Assignees...)
	if a.TeamRoom != "" {
		room, err := c.host.JoinRoom(ctx, a.TeamRoom)
		if err == nil {
			var members []id.UserID
			if members, err = c.host.JoinedUsers(ctx, room); err == nil {
				team = append(team, members...)
			}
		}
		if err != nil {
			c.host.Log().Warn().Err(err).Str("account", a.Name).Msg("Reading the team room failed")
		}
	}
	var out []id.UserID
	for _, u := range dedupe(team) {
		if u != owner && u != a.Owner {
			out = append(out, u)
		}
	}
	return out
}

// contactName is how the lobby and commands name the other side.
func contactName(p *bridge.NewPortal) string {
	if p.Info != nil && p.Info.Name != "" {
		return p.Info.Name
	}
	if p.Info != nil && p.Info.OtherUser != "" {
		return string(p.Info.OtherUser)
	}
	return string(p.Key.ChatID)
}

func dedupe(users []id.UserID) []id.UserID {
	seen := map[id.UserID]bool{}
	var out []id.UserID
	for _, u := range users {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// sweep forgets closed conversations once their retention has passed.
func (c *Plugin) sweep(ctx context.Context) {
	for {
		for i := range c.cfg.Accounts {
			a := &c.cfg.Accounts[i]
			if err := c.store.forgetClosed(ctx, a.Name, time.Now().Add(-a.retention)); err != nil {
				c.host.Log().Warn().Err(err).Str("account", a.Name).Msg("Forgetting closed conversations failed")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}
