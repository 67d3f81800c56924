package bridge

// Logins and sessions: stored logins become live sessions at start; login flows run as
// step machines rendered in the user's management room.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/skip2/go-qrcode"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

func loginFromRow(r *database.LoginRow) *Login {
	return &Login{Connector: r.Connector, ID: LoginID(r.LoginID), UserMXID: id.UserID(r.MXID), RemoteName: r.RemoteName,
		Metadata: r.Metadata, CreatedAt: r.CreatedAt}
}

// loadLogins turns every stored login of an enabled connector into a connecting session.
func (br *Bridge) loadLogins(ctx context.Context) error {
	rows, err := br.DB.AllLogins(ctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if br.connector(r.Connector) == nil {
			continue
		}
		if err = br.startSession(ctx, loginFromRow(r)); err != nil {
			br.Log.Warn().Err(err).Str("connector", r.Connector).Str("login_id", r.LoginID).Msg("Loading login failed")
			br.reportState(ctx, r.Connector, LoginID(r.LoginID), StateBadCredentials, "it could not be loaded; log in again")
		}
	}
	return nil
}

// startSession loads a login's session and starts connecting it.
func (br *Bridge) startSession(ctx context.Context, login *Login) error {
	ch := br.connector(login.Connector)
	sess, err := ch.conn.LoadLogin(ctx, login)
	if err != nil {
		return fmt.Errorf("loading %s login: %w", login.Connector, err)
	}
	br.sessionsLock.Lock()
	old := br.sessions[loginKey{login.Connector, login.ID}]
	br.sessions[loginKey{login.Connector, login.ID}] = sess
	br.sessionsLock.Unlock()
	if old != nil {
		old.Disconnect()
	}
	sess.Connect(context.WithoutCancel(ctx))
	return nil
}

// session returns a live session, or nil.
func (br *Bridge) session(connector string, loginID LoginID) Session {
	br.sessionsLock.RLock()
	defer br.sessionsLock.RUnlock()
	return br.sessions[loginKey{connector, loginID}]
}

// sessionReaches says whether a session may send into a chat.
func (br *Bridge) sessionReaches(sess Session, loginID LoginID, chat PortalKey) bool {
	if sess == nil {
		return false
	}
	if cf, ok := sess.(ChatFilteringSession); ok {
		return cf.CanReach(chat)
	}
	return chat.Receiver == "" || chat.Receiver == loginID
}

// outRoute is how a Matrix user's event leaves for the network.
type outRoute struct {
	sess    Session
	loginID LoginID
	// relayed: through someone else's account (the room's relay login or the
	// network's bot), so the text carries the sender's name.
	relayed bool
}

// senderSession picks the route a Matrix user's event leaves through: their own login
// that reaches the chat, one opened on demand, or the room's relay.
func (br *Bridge) senderSession(ctx context.Context, rc *roomContext, user id.UserID) (outRoute, error) {
	level := br.perms.Level(user)
	if level < LevelRelay {
		return outRoute{}, userErrorf("you are not allowed to use this bridge")
	}
	if level >= LevelUser {
		logins, err := br.DB.LoginsOfUser(ctx, user.String())
		if err != nil {
			return outRoute{}, err
		}
		unloaded := false
		for _, l := range logins {
			if l.Connector != rc.key.Connector {
				continue
			}
			sess := br.session(l.Connector, LoginID(l.LoginID))
			if sess == nil {
				unloaded = true
			} else if br.sessionReaches(sess, LoginID(l.LoginID), rc.key) {
				return outRoute{sess: sess, loginID: LoginID(l.LoginID)}, nil
			}
		}
		if unloaded {
			// Sessions are loaded before any event is handled, so a stored login without
			// one failed to load (the user was told). Never open a new login over it:
			// that would lose its settings.
			return outRoute{}, userErrorf("your %s login could not be loaded; log in again with `login %s`",
				rc.ch.info.DisplayName, rc.ch.info.Name)
		}
		// A chat only one login sees (a relay account's DM) cannot be reached by a new
		// login of this user: opening one would only add a useless connection.
		if al, ok := rc.ch.conn.(AutoLoginNetwork); ok && rc.key.Receiver == "" {
			sess, loginID, err := br.autoLogin(ctx, rc, al, user)
			if err != nil || sess != nil {
				return outRoute{sess: sess, loginID: loginID}, err
			}
		}
	}
	if rc.room.RelayLogin != "" {
		if sess := br.session(rc.key.Connector, LoginID(rc.room.RelayLogin)); sess != nil {
			return outRoute{sess: sess, loginID: LoginID(rc.room.RelayLogin), relayed: true}, nil
		}
		return outRoute{}, userErrorf("the relay account of this room is not connected")
	}
	if dr, ok := rc.ch.conn.(RelayingNetwork); ok {
		if sess := dr.RelaySession(ctx, rc.key); sess != nil {
			return outRoute{sess: sess, loginID: defaultRelayLogin, relayed: true}, nil
		}
	}
	return outRoute{}, userErrorf("you are not logged in to %s in this room (send `login %s` to %s, or ask an admin to set a relay)",
		rc.ch.info.DisplayName, rc.ch.info.Name, br.BotMXID())
}

// autoLogin opens a login on demand, once per user and connector even when the user
// speaks in several rooms at the same moment.
func (br *Bridge) autoLogin(ctx context.Context, rc *roomContext, al AutoLoginNetwork, user id.UserID) (Session, LoginID, error) {
	unlock := br.chatLocks.Lock("autologin|" + rc.key.Connector + "|" + user.String())
	defer unlock()
	nl, err := al.AutoLogin(ctx, user, rc.key)
	if err != nil {
		return nil, "", fmt.Errorf("opening %s connection: %w", rc.ch.info.DisplayName, err)
	} else if nl == nil {
		return nil, "", nil
	}
	if sess := br.session(rc.key.Connector, nl.ID); sess != nil {
		// Another room's message opened it while we waited.
		if br.sessionReaches(sess, nl.ID, rc.key) {
			return sess, nl.ID, nil
		}
		return nil, "", nil
	}
	if existing, err := br.DB.GetLogin(ctx, rc.key.Connector, string(nl.ID)); err != nil {
		return nil, "", err
	} else if existing != nil {
		// Never overwrite a stored login's settings (a nick, a SASL password) with
		// defaults: load it as it is.
		if err = br.startSession(ctx, loginFromRow(existing)); err != nil {
			return nil, "", err
		}
	} else if _, err = br.saveLogin(ctx, rc.ch, user, nl); err != nil {
		return nil, "", err
	}
	if sess := br.session(rc.key.Connector, nl.ID); br.sessionReaches(sess, nl.ID, rc.key) {
		return sess, nl.ID, nil
	}
	return nil, "", nil
}

// defaultRelayLogin stands for a connector's own relay in the message map.
const defaultRelayLogin LoginID = "relay:default"

// saveLogin persists a new login and starts its session.
func (br *Bridge) saveLogin(ctx context.Context, ch *connectorHost, user id.UserID, nl *NewLogin) (*Login, error) {
	row := &database.LoginRow{Connector: ch.info.Name, LoginID: string(nl.ID), MXID: user.String(), RemoteName: nl.RemoteName, Metadata: nl.Metadata}
	existing, err := br.DB.GetLogin(ctx, ch.info.Name, string(nl.ID))
	if err != nil {
		return nil, err
	}
	if existing != nil && existing.MXID != user.String() {
		return nil, userErrorf("that %s account is already logged in by another Matrix user", ch.info.DisplayName)
	}
	if err = br.DB.UpsertLogin(ctx, row); err != nil {
		return nil, err
	}
	login := loginFromRow(row)
	login.CreatedAt = time.Now()
	if err = br.startSession(ctx, login); err != nil {
		return nil, err
	}
	return login, nil
}

// logout disconnects and forgets a login and everything stored for it.
func (br *Bridge) logout(ctx context.Context, connector string, loginID LoginID) error {
	br.sessionsLock.Lock()
	sess := br.sessions[loginKey{connector, loginID}]
	delete(br.sessions, loginKey{connector, loginID})
	br.sessionsLock.Unlock()
	var remoteErr error
	if sess != nil {
		remoteErr = sess.Logout(ctx)
		sess.Disconnect()
	}
	if err := br.DB.DeleteLogin(ctx, connector, string(loginID)); err != nil {
		return err
	}
	// What only this login could see goes with it: its chats' rooms are unlinked (the
	// ghosts and the bot leave), their portals and message mappings deleted.
	rooms, err := br.DB.RoomsForReceiver(ctx, connector, string(loginID))
	if err != nil {
		return err
	}
	ch := br.connector(connector)
	for _, r := range rooms {
		rc := &roomContext{room: r, ch: ch, key: PortalKey{Connector: r.Connector, ChatID: ChatID(r.ChatID), Receiver: LoginID(r.Receiver)}}
		if err = br.unlinkRoom(ctx, rc, true); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("room_id", r.RoomID).Msg("Unlinking room of logged-out login failed")
		}
		if _, err = br.AS.BotIntent().LeaveRoom(ctx, id.RoomID(r.RoomID)); err != nil {
			zerolog.Ctx(ctx).Debug().Err(err).Str("room_id", r.RoomID).Msg("Bot could not leave room of logged-out login")
		}
	}
	if remoteErr != nil {
		return fmt.Errorf("logged out locally, but the remote side said: %w", remoteErr)
	}
	return nil
}

// reportState records a session's state and tells its user about the ones that need
// them to act (bad credentials, logged out remotely).
func (br *Bridge) reportState(ctx context.Context, connector string, loginID LoginID, state SessionState, message string) {
	log := br.Log.With().Str("connector", connector).Str("login_id", string(loginID)).Str("state", string(state)).Logger()
	log.Info().Msg("Login state changed")
	row, err := br.DB.GetLogin(ctx, connector, string(loginID))
	if err != nil {
		log.Warn().Err(err).Msg("Loading login failed")
	}
	if err := br.DB.SetLoginState(ctx, connector, string(loginID), string(state), message); err != nil {
		log.Warn().Err(err).Msg("Saving login state failed")
	}
	switch state {
	case StateBadCredentials, StateLoggedOut:
		if row == nil || (row.State == string(state) && row.StateMessage == message) {
			// Already told: a login that stays logged out is reported again at every
			// start, and its user should hear of it once.
			return
		}
		ch := br.connector(connector)
		text := fmt.Sprintf("Your %s login %s is %s", ch.info.DisplayName, row.RemoteName, stateText(state))
		if message != "" {
			text += ": " + message
		}
		br.notifyUser(ctx, id.UserID(row.MXID), text)
	}
}

func stateText(s SessionState) string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateTransientError:
		return "temporarily disconnected"
	case StateBadCredentials:
		return "rejected (bad credentials)"
	case StateLoggedOut:
		return "logged out"
	case StateDisconnected:
		return "disconnected"
	}
	return "in an unknown state"
}

// notifyUser sends a notice to a user's management room, creating one if needed.
func (br *Bridge) notifyUser(ctx context.Context, user id.UserID, text string) {
	roomID, err := br.managementRoom(ctx, user)
	if err != nil || roomID == "" {
		br.Log.Warn().Err(err).Stringer("user_id", user).Msg("No management room to notify user")
		return
	}
	if _, err = br.botNotice(ctx, roomID, text); err != nil {
		br.Log.Warn().Err(err).Stringer("user_id", user).Msg("Notifying user failed")
	}
}

// managementRoom returns the user's DM with the bot, creating it when there is none.
func (br *Bridge) managementRoom(ctx context.Context, user id.UserID) (id.RoomID, error) {
	roomID, err := br.DB.GetManagementRoom(ctx, user.String())
	if err != nil || roomID != "" {
		return id.RoomID(roomID), err
	}
	resp, err := br.AS.BotIntent().CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Visibility: "private", Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{user},
		Name: br.Config.AppService.Bot.Displayname,
	})
	if err != nil {
		return "", fmt.Errorf("creating management room: %w", err)
	}
	if err = br.DB.SetManagementRoom(ctx, user.String(), resp.RoomID.String()); err != nil {
		return "", err
	}
	return resp.RoomID, nil
}

// loginFlowState is a login flow running for one user.
type loginFlowState struct {
	mu      sync.Mutex
	ch      *connectorHost
	proc    LoginProcess
	user    id.UserID
	roomID  id.RoomID
	step    *LoginStep
	qrEvent id.EventID
	cancel  context.CancelFunc
}

// startLoginFlow begins a login for user in roomID and renders its first step.
func (br *Bridge) startLoginFlow(ctx context.Context, ch *connectorHost, user id.UserID, roomID id.RoomID, flowID string, args []string) error {
	br.loginsLock.Lock()
	if old := br.activeLogins[user]; old != nil {
		br.loginsLock.Unlock()
		return userErrorf("a login is already in progress; send `cancel` to abort it")
	}
	proc, err := ch.conn.StartLogin(ctx, user, flowID, args)
	if err != nil {
		br.loginsLock.Unlock()
		return userErrorf("could not start %s login: %v", ch.info.DisplayName, err)
	}
	flowCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	st := &loginFlowState{ch: ch, proc: proc, user: user, roomID: roomID, cancel: cancel}
	br.activeLogins[user] = st
	br.loginsLock.Unlock()
	br.markLoginFlow(ctx, st, false)
	go br.runLoginStep(st, flowCtx, func(ctx context.Context) (*LoginStep, error) { return proc.Start(ctx) })
	return nil
}

// runLoginStep runs one part of a flow (its start, or the answer to an input) on its
// own goroutine and decides, from what that part ended on, whether the flow is over.
func (br *Bridge) runLoginStep(st *loginFlowState, ctx context.Context, next func(context.Context) (*LoginStep, error)) {
	waitingInput := false
	defer func() {
		if r := recover(); r != nil {
			zerolog.Ctx(ctx).Error().Str("panic", fmt.Sprint(r)).Msg("Login flow panicked")
			br.loginNotice(ctx, st, "Login failed: internal error")
			waitingInput = false
		}
		if !waitingInput {
			br.endLoginFlow(st)
		}
	}()
	step, err := next(ctx)
	waitingInput = br.driveLogin(ctx, st, step, err)
	if waitingInput {
		// Nobody answers forever: a question left open expires with its flow.
		st.mu.Lock()
		asked := st.step
		st.mu.Unlock()
		time.AfterFunc(loginInputTimeout, func() {
			st.mu.Lock()
			still := st.step == asked
			st.mu.Unlock()
			if still {
				br.endLoginFlow(st)
				br.guardExpiredSecret(context.Background(), st, asked)
				br.loginNotice(context.Background(), st, "The login timed out waiting for your answer.")
			}
		})
	}
}

// loginInputTimeout is how long a login flow waits for the user to answer a question.
const loginInputTimeout = 10 * time.Minute

// driveLogin renders steps until the flow needs input (it then returns true), finishes
// or fails.
func (br *Bridge) driveLogin(ctx context.Context, st *loginFlowState, step *LoginStep, err error) bool {
	log := zerolog.Ctx(ctx).With().Str("connector", st.ch.info.Name).Stringer("user_id", st.user).Logger()
	for {
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return false
			}
			msg := err.Error()
			if errors.Is(err, context.DeadlineExceeded) {
				msg = "the login timed out"
			}
			br.loginNotice(ctx, st, "Login failed: "+msg)
			return false
		}
		if step == nil {
			br.loginNotice(ctx, st, "Login failed: the connector returned no step")
			return false
		}
		st.mu.Lock()
		st.step = step
		st.mu.Unlock()
		switch step.Type {
		case StepInput:
			text := step.Instructions
			if text == "" {
				text = "Please send your " + step.InputName + "."
			}
			br.markLoginFlow(ctx, st, step.InputSecret)
			br.loginNotice(ctx, st, text)
			return true // SubmitInput resumes the flow
		case StepDisplay:
			if err = br.renderDisplay(ctx, st, step); err != nil {
				log.Warn().Err(err).Msg("Rendering login step failed")
			}
			step, err = st.proc.Wait(ctx)
			continue
		case StepDone:
			if st.qrEvent != "" {
				_, _ = br.AS.BotIntent().RedactEvent(ctx, st.roomID, st.qrEvent)
			}
			if step.Login == nil {
				br.loginNotice(ctx, st, "Login failed: the connector returned no login")
				return false
			}
			login, err := br.saveLogin(ctx, st.ch, st.user, step.Login)
			if err != nil {
				br.loginNotice(ctx, st, "Login failed: "+err.Error())
				return false
			}
			log.Info().Str("login_id", string(login.ID)).Msg("Login succeeded")
			msg := step.Instructions
			if msg == "" {
				msg = fmt.Sprintf("Logged in to %s as %s.", st.ch.info.DisplayName, login.RemoteName)
			}
			br.loginNotice(ctx, st, msg)
			return false
		default:
			br.loginNotice(ctx, st, "Login failed: unknown step")
			return false
		}
	}
}

func (br *Bridge) endLoginFlow(st *loginFlowState) {
	st.mu.Lock()
	cancel := st.cancel
	st.mu.Unlock()
	cancel()
	st.proc.Cancel()
	br.loginsLock.Lock()
	current := br.activeLogins[st.user] == st
	if current {
		delete(br.activeLogins, st.user)
	}
	br.loginsLock.Unlock()
	if current {
		br.unmarkLoginFlow(st)
	}
}

func (br *Bridge) loginNotice(ctx context.Context, st *loginFlowState, text string) {
	if _, err := br.botNotice(context.WithoutCancel(ctx), st.roomID, text); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Sending login notice failed")
	}
}

// renderDisplay shows a QR payload as an image (replacing the previous one) or a code
// as text.
func (br *Bridge) renderDisplay(ctx context.Context, st *loginFlowState, step *LoginStep) error {
	bot := br.AS.BotIntent()
	if step.Display != DisplayQR {
		text := step.Instructions
		if text == "" {
			text = "Enter this code on your device:"
		}
		_, err := br.sendEvent(ctx, bot, st.roomID, event.EventMessage, &event.MessageEventContent{
			MsgType: event.MsgNotice, Body: text + " " + step.Data,
			Format: event.FormatHTML, FormattedBody: text + " <code>" + step.Data + "</code>",
		}, "", time.Time{})
		return err
	}
	png, err := qrcode.Encode(step.Data, qrcode.Medium, 512)
	if err != nil {
		return fmt.Errorf("rendering QR code: %w", err)
	}
	body := step.Instructions
	if body == "" {
		body = "Scan this QR code to log in"
	}
	content := &event.MessageEventContent{MsgType: event.MsgImage, Body: body, FileName: "login-qr.png",
		Info: &event.FileInfo{MimeType: "image/png", Size: len(png), Width: 512, Height: 512}}
	// In an encrypted management room the code goes as an encrypted attachment: it
	// logs the account in, and the media store must not hold it in clear.
	if err = br.upload(ctx, bot, st.roomID, content, bytes.NewReader(png), int64(len(png)), "image/png", "login-qr.png"); err != nil {
		return err
	}
	if st.qrEvent == "" {
		eventID, err := br.sendEvent(ctx, bot, st.roomID, event.EventMessage, content, "", time.Time{})
		if err != nil {
			return err
		}
		st.qrEvent = eventID
		return nil
	}
	content.SetEdit(st.qrEvent)
	_, err = br.sendEvent(ctx, bot, st.roomID, event.EventMessage, content, "", time.Time{})
	return err
}

// submitLoginInput feeds a management-room message to a flow waiting for input. It
// returns false when the user has no flow waiting.
func (br *Bridge) submitLoginInput(ctx context.Context, user id.UserID, roomID id.RoomID, eventID id.EventID, text string) bool {
	br.loginsLock.Lock()
	st := br.activeLogins[user]
	br.loginsLock.Unlock()
	if st == nil || st.roomID != roomID {
		return false
	}
	st.mu.Lock()
	step := st.step
	st.mu.Unlock()
	if step == nil || step.Type != StepInput {
		return false
	}
	if step.InputSecret {
		br.redactSecret(ctx, user, roomID, eventID)
	}
	flowCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	st.mu.Lock()
	st.step = nil
	st.cancel()
	st.cancel = cancel
	st.mu.Unlock()
	go br.runLoginStep(st, flowCtx, func(ctx context.Context) (*LoginStep, error) { return st.proc.SubmitInput(ctx, text) })
	return true
}

// redactSecret keeps a secret out of the room history: the bot redacts it when it has
// the power (rooms it created), else the user's double puppet does; failing both, the
// user is asked to delete it.
func (br *Bridge) redactSecret(ctx context.Context, user id.UserID, roomID id.RoomID, eventID id.EventID) {
	req := mautrix.ReqRedact{Reason: "secret login input"}
	_, err := br.AS.BotIntent().RedactEvent(ctx, roomID, eventID, req)
	if err == nil {
		return
	}
	if dp := br.doublePuppetIntent(ctx, user); dp != nil {
		if _, err = dp.RedactEvent(ctx, roomID, eventID, req); err == nil {
			return
		}
	}
	zerolog.Ctx(ctx).Warn().Err(err).Msg("Could not redact secret login input")
	if _, err = br.botNotice(ctx, roomID, "I could not delete the message with your secret: please delete it yourself."); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Sending notice failed")
	}
}

// cancelLogin aborts a user's running login flow.
func (br *Bridge) cancelLogin(user id.UserID) bool {
	br.loginsLock.Lock()
	st := br.activeLogins[user]
	br.loginsLock.Unlock()
	if st == nil {
		return false
	}
	br.endLoginFlow(st)
	return true
}
