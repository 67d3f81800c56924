// Package loopback is a test-only connector: it bridges the tiny loopnet network that
// tests and the demo run in-process, so the core can be exercised end to end through a
// real homeserver. It is compiled into the binary only with -tags passerelle_loopback.
package loopback

import (
	"bytes"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.mau.fi/util/dbutil"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/loopback/loopnet"
)

// upgradeFiles holds the migrations of the connector's table (loopback_cursor), which
// bridge.OpenTables versions in loopback_version.
//
//go:embed upgrades/*.sql
var upgradeFiles embed.FS

// Config is the connector's block in the bridge config.
type Config struct {
	// NetworkURL is where the loopnet server listens.
	NetworkURL string `yaml:"network_url"`
}

// Connector bridges loopnet.
type Connector struct {
	host bridge.Host
	cfg  Config
	// db is the connector's handle on the bridge database (see bridge.OpenTables).
	db     *dbutil.Database
	client *http.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.RWMutex
	logins map[string]bool
}

// New returns an unconfigured connector.
func New() *Connector {
	return &Connector{client: &http.Client{Timeout: 30 * time.Second}, logins: map[string]bool{}}
}

// What loopback offers beyond the required contract: the capabilities most networks
// have, so each shows at work in a few lines.
var (
	_ bridge.Network              = (*Connector)(nil)
	_ bridge.ChatResolvingNetwork = (*Connector)(nil)
	_ bridge.DMNetwork            = (*Connector)(nil)
	_ bridge.AliasNetwork         = (*Connector)(nil)
	_ bridge.GhostProfileNetwork  = (*Connector)(nil)

	_ bridge.Session           = (*session)(nil)
	_ bridge.EditingSession    = (*session)(nil)
	_ bridge.RedactingSession  = (*session)(nil)
	_ bridge.ReactingSession   = (*session)(nil)
	_ bridge.TypingSession     = (*session)(nil)
	_ bridge.ReceiptSession    = (*session)(nil)
	_ bridge.MembershipSession = (*session)(nil)
	_ bridge.RoomMetaSession   = (*session)(nil)
)

// Info implements bridge.Network.
func (c *Connector) Info() bridge.NetworkInfo {
	return bridge.NetworkInfo{
		Name: "loopback", DisplayName: "Loopback", ProtocolID: "loopback",
	}
}

// Init implements bridge.Network.
func (c *Connector) Init(ctx context.Context, host bridge.Host, node *yaml.Node) error {
	c.host = host
	if node != nil && node.Kind != 0 {
		if err := node.Decode(&c.cfg); err != nil {
			return fmt.Errorf("connectors.loopback: %w", err)
		}
	}
	if c.cfg.NetworkURL == "" {
		return errors.New("connectors.loopback.network_url: missing")
	}
	log := dbutil.ZeroLogger(host.Log().With().Str("db_section", "loopback").Logger())
	db, err := bridge.OpenTables(ctx, host.Database(), "loopback", upgradeFiles, log)
	if err != nil {
		return err
	}
	c.db = db
	return nil
}

// Start implements bridge.Network: it follows the network's event stream.
func (c *Connector) Start(ctx context.Context) error {
	logins, err := c.host.Logins(ctx)
	if err != nil {
		return err
	}
	for _, l := range logins {
		c.setLogin(string(l.ID), true)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.follow(runCtx)
	}()
	return nil
}

// Stop implements bridge.Network.
func (c *Connector) Stop(ctx context.Context) {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
}

func (c *Connector) setLogin(id string, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on {
		c.logins[id] = true
	} else {
		delete(c.logins, id)
	}
}

func (c *Connector) isLogin(id string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.logins[id]
}

func (c *Connector) cursor(ctx context.Context) (int64, error) {
	var seq int64
	err := c.db.QueryRow(ctx, `SELECT seq FROM loopback_cursor WHERE id=1`).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

func (c *Connector) saveCursor(ctx context.Context, seq int64) error {
	_, err := c.db.Exec(ctx, `INSERT INTO loopback_cursor (id, seq) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET seq=excluded.seq`, seq)
	return err
}

// follow long-polls the network and hands events to the core. The cursor only moves
// past an event once the core has stored it, so a crash redelivers instead of losing.
func (c *Connector) follow(ctx context.Context) {
	log := c.host.Log()
	after, err := c.cursor(ctx)
	if err != nil {
		log.Error().Err(err).Msg("Loading loopback cursor failed")
		return
	}
	for ctx.Err() == nil {
		events, err := c.fetch(ctx, after)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn().Err(err).Msg("Fetching loopnet events failed")
				select { // Stop need not wait out the pause
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		for _, e := range events {
			for _, re := range c.convert(e) {
				// The core retries until stored; an error means the bridge is stopping,
				// and the cursor then stays before this event.
				if err = c.host.QueueRemoteEvent(ctx, re); err != nil {
					return
				}
			}
			if ctx.Err() != nil {
				return
			}
			after = e.Seq
			if err = c.saveCursor(ctx, after); err != nil {
				log.Warn().Err(err).Msg("Saving loopback cursor failed")
			}
		}
	}
}

func (c *Connector) fetch(ctx context.Context, after int64) ([]loopnet.Event, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/events?after=%d", c.cfg.NetworkURL, after), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loopnet answered %s", resp.Status)
	}
	var events []loopnet.Event
	return events, json.NewDecoder(resp.Body).Decode(&events)
}

// convert maps a network event to core remote events. Echoes of the bridge's own sends
// (they carry a client transaction ID) are dropped.
func (c *Connector) convert(e loopnet.Event) []*bridge.RemoteEvent {
	if e.ClientTxn != "" {
		return nil
	}
	key := bridge.PortalKey{Connector: "loopback", ChatID: bridge.ChatID(e.Chat)}
	sender := bridge.Sender{RemoteID: bridge.RemoteUserID(e.Sender), Name: e.SenderName}
	if e.DMFor != "" {
		if !c.isLogin(e.DMFor) {
			return nil
		}
		key.Receiver = bridge.LoginID(e.DMFor)
		sender.Login = bridge.LoginID(e.DMFor)
	}
	if c.isLogin(e.Sender) {
		sender.IsFromMe = true
		sender.Login = bridge.LoginID(e.Sender)
	}
	re := &bridge.RemoteEvent{Chat: key, ID: bridge.RemoteMessageID(e.ID), Sender: sender, Timestamp: e.Time, TargetID: bridge.RemoteMessageID(e.Target), Emoji: e.Emoji}
	if e.DMFor != "" {
		other := strings.TrimPrefix(e.Chat, "dm:")
		re.CreatePortal = true
		re.ChatInfo = &bridge.ChatInfo{Key: key, Name: other, IsDM: true, OtherUser: bridge.RemoteUserID(other)}
	}
	switch e.Kind {
	case loopnet.KindMessage:
		re.Type = bridge.RemoteMessage
		re.Content = content(e)
	case loopnet.KindEdit:
		re.Type = bridge.RemoteEdit
		re.Content = content(e)
	case loopnet.KindRedact:
		re.Type = bridge.RemoteRedaction
	case loopnet.KindReact:
		re.Type = bridge.RemoteReaction
	case loopnet.KindUnreact:
		re.Type = bridge.RemoteUnreaction
	case loopnet.KindJoin:
		re.Type = bridge.RemoteJoin
	case loopnet.KindLeave:
		re.Type = bridge.RemoteLeave
	case loopnet.KindTyping:
		re.Type, re.Typing = bridge.RemoteTyping, e.Text != "stop"
	case loopnet.KindReceipt:
		re.Type = bridge.RemoteReceipt
	case loopnet.KindTopic:
		re.Type = bridge.RemoteChatInfo
		re.ChatInfo = &bridge.ChatInfo{Key: key, Name: e.Chat, Topic: e.Text}
	default:
		return nil
	}
	return []*bridge.RemoteEvent{re}
}

func content(e loopnet.Event) *bridge.MessageContent {
	mc := &bridge.MessageContent{MsgType: event.MessageType(e.MsgType), Body: e.Text, FormattedBody: e.HTML,
		ReplyTo: bridge.RemoteMessageID(e.ReplyTo), Mentions: mentioned(e.Mentions)}
	if mc.MsgType == "" {
		mc.MsgType = event.MsgText
	}
	if len(e.FileData) > 0 {
		mc.Media = &bridge.Media{FileName: e.FileName, MimeType: e.MimeType, Data: e.FileData, Size: len(e.FileData)}
	}
	return mc
}

// send posts an event to the network as account and returns its ID.
func (c *Connector) send(ctx context.Context, account string, e loopnet.Event) (string, error) {
	body, err := json.Marshal(loopnet.SendRequest{Account: account, Event: e})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.NetworkURL+"/send", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("sending to loopnet: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("loopnet refused the send: %s", resp.Status)
	}
	var out struct {
		ID string `json:"id"`
	}
	if err = json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("decoding loopnet answer: %w", err)
	}
	return out.ID, nil
}

// LoginFlows implements bridge.Network.
func (c *Connector) LoginFlows() []bridge.LoginFlow {
	return []bridge.LoginFlow{
		{ID: "qr", Name: "QR code", Description: "scan a code from your loopnet device"},
		{ID: "account", Name: "Account name", Description: "type the account to use"},
	}
}

// StartLogin implements bridge.Network.
func (c *Connector) StartLogin(ctx context.Context, user id.UserID, flowID string, args []string) (bridge.LoginProcess, error) {
	switch flowID {
	case "qr":
		return &qrLogin{c: c}, nil
	case "account":
		return &accountLogin{c: c, preset: strings.Join(args, " ")}, nil
	}
	return nil, fmt.Errorf("unknown login flow %q", flowID)
}

// LoadLogin implements bridge.Network.
func (c *Connector) LoadLogin(ctx context.Context, login *bridge.Login) (bridge.Session, error) {
	c.setLogin(string(login.ID), true)
	return &session{c: c, login: login}, nil
}

// ResolveChat implements bridge.ChatResolvingNetwork: "#name" is a channel.
func (c *Connector) ResolveChat(ctx context.Context, login *bridge.Login, args []string) (*bridge.ChatInfo, error) {
	if len(args) != 1 || !strings.HasPrefix(args[0], "#") || len(args[0]) < 2 {
		return nil, errors.New("give a channel name starting with #")
	}
	return &bridge.ChatInfo{Key: bridge.PortalKey{Connector: "loopback", ChatID: bridge.ChatID(args[0])}, Name: args[0]}, nil
}

// DMChat implements bridge.DMNetwork.
func (c *Connector) DMChat(ctx context.Context, login *bridge.Login, remoteUser string) (*bridge.ChatInfo, error) {
	if remoteUser == "" || strings.ContainsAny(remoteUser, " #") {
		return nil, fmt.Errorf("%q is not a loopnet user", remoteUser)
	}
	key := bridge.PortalKey{Connector: "loopback", ChatID: bridge.ChatID("dm:" + remoteUser), Receiver: login.ID}
	return &bridge.ChatInfo{Key: key, Name: remoteUser, IsDM: true, OtherUser: bridge.RemoteUserID(remoteUser)}, nil
}

// ChatForAlias implements bridge.AliasNetwork: #loopback_lobby is channel #lobby.
func (c *Connector) ChatForAlias(ctx context.Context, alias string) (*bridge.ChatInfo, error) {
	if alias == "" || strings.ContainsAny(alias, ":#") {
		return nil, nil
	}
	return &bridge.ChatInfo{Key: bridge.PortalKey{Connector: "loopback", ChatID: bridge.ChatID("#" + alias)}, Name: "#" + alias}, nil
}

// AliasFor implements bridge.AliasNetwork.
func (c *Connector) AliasFor(chat bridge.PortalKey) string {
	if chat.Receiver != "" || !strings.HasPrefix(string(chat.ChatID), "#") {
		return ""
	}
	return strings.TrimPrefix(string(chat.ChatID), "#")
}

// GhostInfo implements bridge.GhostProfileNetwork: every loopnet user exists.
func (c *Connector) GhostInfo(ctx context.Context, remoteID bridge.RemoteUserID) (*bridge.GhostInfo, error) {
	return &bridge.GhostInfo{Name: string(remoteID)}, nil
}

// qrLogin is a QR-style flow: show a code that rotates until a device confirms it.
type qrLogin struct {
	c       *Connector
	id      string
	version int
}

func (l *qrLogin) Start(ctx context.Context) (*bridge.LoginStep, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.c.cfg.NetworkURL+"/login/start", nil)
	if err != nil {
		return nil, err
	}
	resp, err := l.c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("starting login: %w", err)
	}
	defer resp.Body.Close()
	var out struct{ ID, Code string }
	if err = json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("starting login: %w", err)
	}
	l.id = out.ID
	return &bridge.LoginStep{Type: bridge.StepDisplay, Display: bridge.DisplayQR, Data: out.Code,
		Instructions: "Scan this code with your loopnet device"}, nil
}

func (l *qrLogin) Wait(ctx context.Context) (*bridge.LoginStep, error) {
	for {
		u := fmt.Sprintf("%s/login/wait?id=%s&version=%d", l.c.cfg.NetworkURL, url.QueryEscape(l.id), l.version)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := l.c.client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("waiting for login: %w", err)
		}
		var out struct {
			Code, Account, Failed string
			Version               int
			Done                  bool
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("waiting for login: %w", err)
		}
		switch {
		case out.Failed != "":
			return nil, errors.New(out.Failed)
		case out.Done:
			return &bridge.LoginStep{Type: bridge.StepDone, Login: &bridge.NewLogin{ID: bridge.LoginID(out.Account), RemoteName: out.Account}}, nil
		case out.Version != l.version:
			l.version = out.Version
			return &bridge.LoginStep{Type: bridge.StepDisplay, Display: bridge.DisplayQR, Data: out.Code,
				Instructions: "Scan this code with your loopnet device"}, nil
		}
	}
}

func (l *qrLogin) SubmitInput(ctx context.Context, input string) (*bridge.LoginStep, error) {
	return nil, errors.New("this login needs no input")
}

func (l *qrLogin) Cancel() {}

// accountLogin asks for an account name (the input-step flow).
type accountLogin struct {
	c      *Connector
	preset string
}

func (l *accountLogin) Start(ctx context.Context) (*bridge.LoginStep, error) {
	if l.preset != "" {
		return l.SubmitInput(ctx, l.preset)
	}
	return &bridge.LoginStep{Type: bridge.StepInput, InputName: "account", Instructions: "Send the loopnet account name to use."}, nil
}

func (l *accountLogin) SubmitInput(ctx context.Context, input string) (*bridge.LoginStep, error) {
	account := strings.TrimSpace(input)
	if account == "" || strings.ContainsAny(account, " #:") {
		return nil, fmt.Errorf("%q is not a valid account name", input)
	}
	return &bridge.LoginStep{Type: bridge.StepDone, Login: &bridge.NewLogin{ID: bridge.LoginID(account), RemoteName: account}}, nil
}

func (l *accountLogin) Wait(ctx context.Context) (*bridge.LoginStep, error) {
	return nil, errors.New("nothing to wait for")
}

func (l *accountLogin) Cancel() {}

// mentioned turns loopnet's mentioned names into remote user IDs.
func mentioned(names []string) []bridge.RemoteUserID {
	out := make([]bridge.RemoteUserID, len(names))
	for i, n := range names {
		out[i] = bridge.RemoteUserID(n)
	}
	return out
}
