package bridge

// Login flows across restarts. A flow's remote half is a live connection (a QR pairing,
// a SASL check) that cannot outlive the process, so a flow is not resumed; but its user
// is told it stopped, and an answer to a secret question that arrives after the flow is
// gone is deleted unread instead of being taken for a command and echoed back.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

// markLoginFlow records a running flow and whether it waits for a secret.
func (br *Bridge) markLoginFlow(ctx context.Context, st *loginFlowState, secret bool) {
	err := br.DB.UpsertLoginFlow(ctx, &database.LoginFlowRow{MXID: st.user.String(), RoomID: st.roomID.String(),
		Connector: st.ch.info.Name, Secret: secret})
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Stringer("user_id", st.user).Msg("Recording the login flow failed")
	}
}

// unmarkLoginFlow forgets a finished flow, unless the bridge is stopping (Stop keeps
// the mark so the next start knows the flow was cut).
func (br *Bridge) unmarkLoginFlow(st *loginFlowState) {
	if br.stopping.Load() {
		return
	}
	if err := br.DB.DeleteLoginFlow(context.Background(), st.user.String()); err != nil {
		br.Log.Warn().Err(err).Stringer("user_id", st.user).Msg("Forgetting the login flow failed")
	}
}

// guardExpiredSecret keeps a mark after a flow that was waiting for a secret ended
// without it (timed out, or stopped by a restart): the secret may still come.
func (br *Bridge) guardExpiredSecret(ctx context.Context, st *loginFlowState, step *LoginStep) {
	if step == nil || step.Type != StepInput || !step.InputSecret {
		return
	}
	err := br.DB.UpsertLoginFlow(ctx, &database.LoginFlowRow{MXID: st.user.String(), RoomID: st.roomID.String(),
		Connector: st.ch.info.Name, Secret: true, Notified: true})
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Stringer("user_id", st.user).Msg("Recording the expired secret question failed")
	}
}

// stopLoginFlows tells the users of running flows that a restart stops them, and keeps
// their marks for the next start.
func (br *Bridge) stopLoginFlows(ctx context.Context) {
	br.loginsLock.Lock()
	flows := make([]*loginFlowState, 0, len(br.activeLogins))
	for _, st := range br.activeLogins {
		flows = append(flows, st)
	}
	br.loginsLock.Unlock()
	for _, st := range flows {
		st.mu.Lock()
		step := st.step
		st.mu.Unlock()
		noticeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		br.loginNotice(noticeCtx, st, fmt.Sprintf("The bridge is restarting, so your %s login was stopped. Send `login %s` to start again once it is back.",
			st.ch.info.DisplayName, st.ch.info.Name))
		cancel()
		secret := step != nil && step.Type == StepInput && step.InputSecret
		if err := br.DB.UpsertLoginFlow(ctx, &database.LoginFlowRow{MXID: st.user.String(), RoomID: st.roomID.String(),
			Connector: st.ch.info.Name, Secret: secret, Notified: true}); err != nil {
			br.Log.Warn().Err(err).Stringer("user_id", st.user).Msg("Recording the stopped login flow failed")
		}
	}
}

// resumeLoginFlows runs at start: users whose flow a crash cut are told; the marks of
// secret questions stay until the user's next message.
func (br *Bridge) resumeLoginFlows(ctx context.Context) {
	flows, err := br.DB.AllLoginFlows(ctx)
	if err != nil {
		br.Log.Warn().Err(err).Msg("Loading interrupted login flows failed")
		return
	}
	for _, f := range flows {
		user := id.UserID(f.MXID)
		br.loginsLock.Lock()
		_, running := br.activeLogins[user]
		br.loginsLock.Unlock()
		if running {
			continue // a new flow since the start: it owns the mark
		}
		if !f.Notified {
			name := f.Connector
			if ch := br.connector(f.Connector); ch != nil {
				name = ch.info.DisplayName
			}
			text := fmt.Sprintf("The bridge restarted, so your %s login was stopped. Send `login %s` to start again.", name, f.Connector)
			if _, err = br.botNotice(ctx, id.RoomID(f.RoomID), text); err != nil {
				br.Log.Warn().Err(err).Str("user_id", f.MXID).Msg("Telling a user their login was stopped failed")
			}
		}
		if f.Secret {
			f.Notified = true
			err = br.DB.UpsertLoginFlow(ctx, f)
		} else {
			err = br.DB.DeleteLoginFlow(ctx, f.MXID)
		}
		if err != nil {
			br.Log.Warn().Err(err).Str("user_id", f.MXID).Msg("Updating an interrupted login flow failed")
		}
	}
}

// answerAfterSecretQuestion handles a management-room message from a user whose secret
// question is no longer open: unless it is a command, it is taken for the secret,
// deleted unread, and the user told. It reports whether it handled the message.
func (br *Bridge) answerAfterSecretQuestion(ctx context.Context, user id.UserID, roomID id.RoomID, eventID id.EventID,
	body string, isCommand func(string) bool) bool {
	f, err := br.DB.LoginFlow(ctx, user.String())
	if err != nil || f == nil || !f.Secret || f.RoomID != roomID.String() {
		return false
	}
	br.loginsLock.Lock()
	_, running := br.activeLogins[user]
	br.loginsLock.Unlock()
	if running {
		return false
	}
	if err = br.DB.DeleteLoginFlow(ctx, user.String()); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Forgetting the expired secret question failed")
	}
	if fields := strings.Fields(body); len(fields) > 0 && isCommand(strings.ToLower(fields[0])) {
		return false
	}
	br.redactSecret(ctx, user, roomID, eventID)
	text := fmt.Sprintf("Your login question is no longer open (it timed out or the bridge restarted), so that message was deleted without being read. Send `login %s` to start again.", f.Connector)
	if _, err = br.botNotice(ctx, roomID, text); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Sending notice failed")
	}
	return true
}
