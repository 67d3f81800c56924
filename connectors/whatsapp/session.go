package whatsapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/passerelle/passerelle/bridge"
)

// session is one linked WhatsApp account.
type session struct {
	c         *Connector
	login     *bridge.Login
	deviceJID types.JID
	client    Client
	log       zerolog.Logger

	mu      sync.Mutex
	handler uint32
	stopped bool
	gone    bool // logged out or replaced: never reconnect
	groups  map[types.JID]*bridge.ChatInfo
	// senders caches the latest message senders in front of the connector's
	// senderStore, which is their record; senderKeys is their order, oldest first.
	senders    map[senderKey]types.JID
	senderKeys []senderKey
	backfill   map[types.JID]int // history messages bridged per chat this run
}

// senderKey names a message within a login: its portal's chat ID and its message ID.
type senderKey struct{ chatID, msgID string }

// maxCachedSenders bounds the in-memory cache of message senders; older ones are read
// from the database.
const maxCachedSenders = 4096

func newSession(c *Connector, login *bridge.Login, deviceJID types.JID, client Client) *session {
	return &session{
		c: c, login: login, deviceJID: deviceJID, client: client,
		log:    c.host.Log().With().Str("login_id", string(login.ID)).Str("user_id", login.UserMXID.String()).Logger(),
		groups: map[types.JID]*bridge.ChatInfo{}, senders: map[senderKey]types.JID{}, backfill: map[types.JID]int{},
	}
}

var (
	_ bridge.Session          = (*session)(nil)
	_ bridge.EditingSession   = (*session)(nil)
	_ bridge.RedactingSession = (*session)(nil)
	_ bridge.ReactingSession  = (*session)(nil)
	_ bridge.TypingSession    = (*session)(nil)
	_ bridge.ReceiptSession   = (*session)(nil)
)

// ownJID is the account's own phone JID.
func (s *session) ownJID() types.JID { return s.deviceJID.ToNonAD() }

// Connect implements bridge.Session. whatsmeow reconnects by itself after drops.
func (s *session) Connect(ctx context.Context) {
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return
	}
	s.stopped = false
	if s.handler == 0 {
		s.handler = s.client.AddEventHandler(s.handleEvent)
	}
	s.mu.Unlock()
	if dev := s.client.Device(); dev == nil || dev.ID == nil {
		s.report(bridge.StateLoggedOut, "the bridge's WhatsApp link is gone (unlinked from the phone while the bridge was away); send `login whatsapp` to link it again")
		return
	}
	if s.client.IsConnected() {
		// A client handed over by a fresh pairing is already connected.
		s.report(bridge.StateConnected, "")
		return
	}
	s.report(bridge.StateConnecting, "")
	go func() {
		if err := s.client.Connect(); err != nil && !errors.Is(err, whatsmeow.ErrAlreadyConnected) {
			s.log.Warn().Err(err).Msg("Connecting to WhatsApp failed")
			s.report(bridge.StateTransientError, "connecting failed: "+err.Error())
		}
	}()
}

// Disconnect implements bridge.Session.
func (s *session) Disconnect() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.client.Disconnect()
}

// Logout implements bridge.Session: the device is unlinked on the phone and deleted
// from the store.
func (s *session) Logout(ctx context.Context) error {
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
	defer s.c.forget(s)
	defer s.c.timers.forgetReceiver(ctx, string(s.login.ID))
	defer func() {
		// What a login's messages were is no one's business once it is gone.
		if err := s.c.senders.forgetLogin(ctx, string(s.login.ID)); err != nil {
			s.log.Warn().Err(err).Msg("Forgetting the logged-out login's message senders failed")
		}
	}()
	if s.client.IsLoggedIn() {
		if err := s.client.Logout(ctx); err == nil {
			return nil
		} else {
			s.log.Warn().Err(err).Msg("Unlinking the device on WhatsApp failed; deleting it locally")
		}
	}
	if dev := s.client.Device(); dev != nil && dev.ID != nil {
		if err := dev.Delete(ctx); err != nil {
			return fmt.Errorf("deleting the WhatsApp device: %w", err)
		}
	}
	return nil
}

// replaced marks a session whose device a new pairing of the same account replaces.
func (s *session) replaced() {
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
}

// report records the session's state with the core.
func (s *session) report(state bridge.SessionState, msg string) {
	s.c.host.ReportState(s.c.runCtxOr(), s.login.ID, state, msg)
}

// runCtxOr is the connector's run context, or a background one before Start.
func (c *Connector) runCtxOr() context.Context {
	if c.runCtx != nil {
		return c.runCtx
	}
	return context.Background()
}

// handleConnectionEvent turns whatsmeow's connection events into login states the
// user sees, with what to do about them.
func (s *session) handleConnectionEvent(evt any) bool {
	switch e := evt.(type) {
	case *events.Connected:
		s.report(bridge.StateConnected, "")
		// Appearing offline keeps the phone's notifications coming.
		if err := s.client.SendPresence(s.c.runCtxOr(), types.PresenceUnavailable); err != nil {
			s.log.Debug().Err(err).Msg("Setting presence failed")
		}
	case *events.Disconnected:
		s.mu.Lock()
		quiet := s.stopped || s.gone
		s.mu.Unlock()
		if !quiet {
			s.report(bridge.StateTransientError, "connection to WhatsApp lost; reconnecting")
		}
	case *events.KeepAliveTimeout:
		s.report(bridge.StateTransientError, "WhatsApp is not answering; waiting for the connection to recover")
	case *events.KeepAliveRestored:
		s.report(bridge.StateConnected, "")
	case *events.LoggedOut:
		s.mu.Lock()
		replaced := s.gone
		s.gone = true
		s.mu.Unlock()
		if replaced {
			return true // a newer link of the same account took over; nothing to tell
		}
		s.log.Warn().Bool("on_connect", e.OnConnect).Str("reason", e.Reason.String()).Msg("WhatsApp logged the bridge out")
		s.report(bridge.StateLoggedOut, "the phone unlinked the bridge (or WhatsApp ended the session: "+e.Reason.String()+
			"); send `logout whatsapp` to clean up and `login whatsapp` to link it again")
	case *events.StreamReplaced:
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		s.report(bridge.StateTransientError, "another client connected with this bridge's WhatsApp session, so this one stopped; restart the bridge if that was not intended")
	case *events.ClientOutdated:
		s.log.Error().Msg("WhatsApp rejected the connection: client outdated (405); the bridge must be updated")
		s.c.outdated(s.c.runCtxOr())
		s.report(bridge.StateBadCredentials, "WhatsApp says this bridge is outdated (error 405); the bridge admin must update Passerelle, then it reconnects by itself")
	case *events.TemporaryBan:
		s.log.Error().Stringer("ban", e).Msg("WhatsApp temporarily banned the account")
		s.report(bridge.StateBadCredentials, e.String())
	case *events.ConnectFailure:
		s.report(bridge.StateTransientError, fmt.Sprintf("WhatsApp refused the connection (%s)", e.Reason.String()))
	default:
		return false
	}
	return true
}

// fetchAvatar downloads a user's or group's profile picture; nil when there is none.
func (s *session) fetchAvatar(ctx context.Context, jid types.JID) *bridge.Media {
	info, err := s.client.GetProfilePictureInfo(ctx, jid, &whatsmeow.GetProfilePictureParams{})
	if err != nil || info == nil || info.URL == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, info.URL, nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.log.Debug().Err(err).Msg("Downloading profile picture failed")
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 5<<20))
	if err != nil {
		return nil
	}
	return &bridge.Media{Data: data, MimeType: http.DetectContentType(data), FileName: "avatar.jpg"}
}

// rememberSender records who sent a message, as WhatsApp named them, so removing a
// reaction to it, quoting it and marking it read (which WhatsApp needs the sender for in
// groups) still name the right person after a restart. The record is written before
// the message reaches the core, so a Matrix user can never act on a message whose
// sender is not stored yet.
func (s *session) rememberSender(ctx context.Context, chatID, msgID string, sender types.JID) error {
	if err := s.c.senders.put(ctx, string(s.login.ID), chatID, msgID, sender); err != nil {
		return err
	}
	s.cacheSender(senderKey{chatID, msgID}, sender)
	return nil
}

// cacheSender keeps a sender in the session's bounded cache.
func (s *session) cacheSender(key senderKey, sender types.JID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.senders[key]; !ok {
		s.senderKeys = append(s.senderKeys, key)
		if len(s.senderKeys) > maxCachedSenders {
			delete(s.senders, s.senderKeys[0])
			s.senderKeys = s.senderKeys[1:]
		}
	}
	s.senders[key] = sender
}

// senderOf returns who sent a message of a chat, from the cache or the database; ok is
// false when it is not recorded (bridged before senders were stored, or past
// retention) or cannot be read, and the caller then falls back on a guess.
func (s *session) senderOf(ctx context.Context, chatID, msgID string) (types.JID, bool) {
	key := senderKey{chatID, msgID}
	s.mu.Lock()
	sender, ok := s.senders[key]
	s.mu.Unlock()
	if ok {
		return sender, true
	}
	sender, ok, err := s.c.senders.get(ctx, string(s.login.ID), chatID, msgID)
	if err != nil {
		// No chat ID: a DM's is the contact's phone number.
		s.log.Warn().Err(err).Str("remote_id", msgID).Msg("Looking up a message's sender failed")
		return types.EmptyJID, false
	}
	if ok {
		s.cacheSender(key, sender)
	}
	return sender, ok
}
