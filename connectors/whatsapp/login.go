package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/passerelle/passerelle/bridge"
)

// Messages shown to the user when a login ends without success.
const (
	msgQRExpired       = "the QR code expired; send `login whatsapp` again"
	msgPairCodeExpired = "the pairing code expired; send `login whatsapp <phone number>` again"
	msgClientOutdated  = "WhatsApp says this bridge is outdated (405); the admin must update it"
	msgNoMultidevice   = "the QR code was scanned by a phone without multi-device support; update WhatsApp on the phone and send `login whatsapp` again"
	msgLoginCancelled  = "the login was cancelled"
)

// pairCodeLifetime bounds how long a pairing code is waited for. WhatsApp closes the
// login websocket once its QR codes run out (about 160 s), which ends the code too.
const pairCodeLifetime = 3 * time.Minute

// pairClientDisplayName is shown on the phone's linked devices list; WhatsApp only
// accepts the `Browser (OS)` form with common names.
const pairClientDisplayName = "Chrome (Linux)"

// loginMetadata is what the core stores for a WhatsApp login: the device to load from
// whatsmeow's store (the keys themselves stay in the store).
type loginMetadata struct {
	DeviceJID string `json:"device_jid"`
}

// pairedHook is told about a successful pairing before the login is reported done; it
// takes over the connected client, or refuses the login with a user error.
type pairedHook func(client Client, device types.JID) (note string, err error)

// newLoginFromJID builds the login a successful pairing produces.
func newLoginFromJID(jid *types.JID, client Client, hook pairedHook) (*bridge.LoginStep, error) {
	if jid == nil || jid.IsEmpty() {
		return nil, errors.New("whatsapp: pairing succeeded but the device has no JID")
	}
	note := ""
	if hook != nil {
		var err error
		if note, err = hook(client, *jid); err != nil {
			return nil, err
		}
	}
	meta, err := json.Marshal(loginMetadata{DeviceJID: jid.String()})
	if err != nil {
		return nil, fmt.Errorf("whatsapp: encoding login metadata: %w", err)
	}
	return &bridge.LoginStep{
		Type:         bridge.StepDone,
		Instructions: "Logged in to WhatsApp as " + remoteName(*jid) + "." + note,
		Login: &bridge.NewLogin{
			ID:         loginID(*jid),
			RemoteName: remoteName(*jid),
			Metadata:   meta,
		},
	}, nil
}

// remoteName is what the user sees for a login: the phone number for phone JIDs.
func remoteName(jid types.JID) string {
	if jid.Server == types.DefaultUserServer && jid.User != "" {
		return "+" + jid.User
	}
	return jid.ToNonAD().String()
}

// qrLogin is `login whatsapp`: a QR code the user scans with their phone, replaced each
// time WhatsApp rotates it.
type qrLogin struct {
	client Client
	paired pairedHook
	// outdated tells the admins WhatsApp refuses this version.
	outdated func()

	mu       sync.Mutex
	qr       <-chan whatsmeow.QRChannelItem
	stopQR   context.CancelFunc
	finished bool
}

var _ bridge.LoginProcess = (*qrLogin)(nil)

func newQRLogin(client Client) *qrLogin { return &qrLogin{client: client} }

// Start requests the QR channel, then connects (whatsmeow refuses the channel once
// connected), and returns the first code.
func (l *qrLogin) Start(ctx context.Context) (*bridge.LoginStep, error) {
	// The channel lives as long as the login, not as long as Start's context.
	qrCtx, stop := context.WithCancel(context.Background())
	ch, err := l.client.GetQRChannel(qrCtx)
	if err != nil {
		stop()
		return nil, fmt.Errorf("whatsapp: getting the QR channel: %w", err)
	}
	l.mu.Lock()
	l.qr, l.stopQR = ch, stop
	l.mu.Unlock()
	if err = l.client.Connect(); err != nil {
		l.Cancel()
		return nil, fmt.Errorf("whatsapp: connecting: %w", err)
	}
	return l.Wait(ctx)
}

func (l *qrLogin) SubmitInput(context.Context, string) (*bridge.LoginStep, error) {
	return nil, errors.New("whatsapp: the QR login takes no input")
}

// Wait returns the next QR code, the finished login, or why the login failed.
func (l *qrLogin) Wait(ctx context.Context) (*bridge.LoginStep, error) {
	l.mu.Lock()
	ch := l.qr
	l.mu.Unlock()
	if ch == nil {
		return nil, errors.New("whatsapp: login not started")
	}
	var item whatsmeow.QRChannelItem
	var ok bool
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case item, ok = <-ch:
	}
	if !ok {
		l.fail()
		return nil, bridge.NewUserError(msgLoginCancelled)
	}
	if item.Event == whatsmeow.QRChannelClientOutdated.Event && l.outdated != nil {
		l.outdated()
	}
	step, err := qrItemStep(item, l.client, l.paired)
	if err != nil {
		l.fail()
	} else if step.Type == bridge.StepDone {
		l.handOver()
	}
	return step, err
}

// qrItemStep turns one QR channel item into a login step or a user-facing error.
func qrItemStep(item whatsmeow.QRChannelItem, client Client, hook pairedHook) (*bridge.LoginStep, error) {
	switch item.Event {
	case whatsmeow.QRChannelEventCode:
		instr := "Scan this QR code with WhatsApp on your phone (Settings → Linked devices → Link a device)."
		if item.Timeout > 0 {
			instr += fmt.Sprintf(" It is replaced in %d seconds.", int(item.Timeout.Round(time.Second)/time.Second))
		}
		return &bridge.LoginStep{
			Type:         bridge.StepDisplay,
			Display:      bridge.DisplayQR,
			Data:         item.Code,
			Instructions: instr,
		}, nil
	case whatsmeow.QRChannelSuccess.Event:
		return newLoginFromJID(client.DeviceJID(), client, hook)
	case whatsmeow.QRChannelTimeout.Event:
		return nil, bridge.NewUserError(msgQRExpired)
	case whatsmeow.QRChannelClientOutdated.Event:
		return nil, bridge.NewUserError(msgClientOutdated)
	case whatsmeow.QRChannelScannedWithoutMultidevice.Event:
		return nil, bridge.NewUserError(msgNoMultidevice)
	case whatsmeow.QRChannelEventError:
		return nil, bridge.NewUserError("pairing with WhatsApp failed: %v; send `login whatsapp` again", item.Error)
	default:
		return nil, bridge.NewUserError("the WhatsApp login ended unexpectedly (%s); send `login whatsapp` again", item.Event)
	}
}

// fail frees the QR channel and the connection after a failed login.
func (l *qrLogin) fail() { l.Cancel() }

// handOver ends the flow without disconnecting: the session now owns the client.
func (l *qrLogin) handOver() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.finished {
		l.finished = true
		l.stopQR()
	}
}

// Cancel stops the QR channel and disconnects. A stored device stays usable: the
// session made by LoadLogin opens its own client.
func (l *qrLogin) Cancel() {
	l.mu.Lock()
	if l.finished {
		l.mu.Unlock()
		return
	}
	l.finished = true
	stop := l.stopQR
	l.mu.Unlock()
	if stop != nil {
		stop()
	}
	l.client.Disconnect()
}

// pairLogin is `login whatsapp <phone>`: WhatsApp shows a notification on the phone and
// the user types the displayed code there.
type pairLogin struct {
	client Client
	paired pairedHook
	// outdated tells the admins WhatsApp refuses this version.
	outdated func()
	phone    string
	// expiry makes the code-expiry timer; tests replace it.
	expiry func(time.Duration) <-chan time.Time

	events  chan any
	done    chan struct{}
	handler uint32
	expired <-chan time.Time

	mu       sync.Mutex
	finished bool
}

var _ bridge.LoginProcess = (*pairLogin)(nil)

func newPairLogin(client Client, phone string) *pairLogin {
	return &pairLogin{
		client: client,
		phone:  phone,
		expiry: time.After,
		events: make(chan any, 16),
		done:   make(chan struct{}),
	}
}

// normalizePhone keeps the digits of an international number.
func normalizePhone(phone string) (string, error) {
	var b strings.Builder
	for _, r := range phone {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	digits := b.String()
	switch {
	case len(digits) <= 6:
		return "", bridge.NewUserError("%q is not a phone number; give it in international form, like +33612345678", phone)
	case strings.HasPrefix(digits, "0"):
		return "", bridge.NewUserError("give the phone number in international form with its country code, like +33612345678, not %q", phone)
	}
	return digits, nil
}

// handleEvent is registered on the client; it never blocks whatsmeow's event loop.
func (l *pairLogin) handleEvent(evt any) bool {
	switch evt.(type) {
	case *events.QR, *events.PairSuccess, *events.PairError, *events.ClientOutdated, *events.Disconnected, *events.LoggedOut:
	default:
		return true
	}
	if _, ok := evt.(*events.ClientOutdated); ok && l.outdated != nil {
		l.outdated()
	}
	select {
	case l.events <- evt:
	case <-l.done:
	default:
		// Only QR rotations can pile up; dropping one is harmless.
	}
	return true
}

// Start connects, waits until the login websocket is up (whatsmeow's first QR event),
// asks WhatsApp for a pairing code and shows it.
func (l *pairLogin) Start(ctx context.Context) (*bridge.LoginStep, error) {
	phone, err := normalizePhone(l.phone)
	if err != nil {
		return nil, err
	}
	l.handler = l.client.AddEventHandler(l.handleEvent)
	if err = l.client.Connect(); err != nil {
		l.Cancel()
		return nil, fmt.Errorf("whatsapp: connecting: %w", err)
	}
	// PairPhone needs a fully established connection: whatsmeow signals it with the
	// QR event it sends even when the code, not the QR, will be used.
	for ready := false; !ready; {
		select {
		case <-ctx.Done():
			l.Cancel()
			return nil, ctx.Err()
		case evt := <-l.events:
			if _, ok := evt.(*events.QR); ok {
				ready = true
			} else if err = l.eventError(evt); err != nil {
				l.Cancel()
				return nil, err
			}
		}
	}
	code, err := l.client.PairPhone(ctx, phone, true, whatsmeow.PairClientChrome, pairClientDisplayName)
	if err != nil {
		l.Cancel()
		if errors.Is(err, whatsmeow.ErrPhoneNumberTooShort) || errors.Is(err, whatsmeow.ErrPhoneNumberIsNotInternational) {
			return nil, bridge.NewUserError("WhatsApp refused the phone number %q: %v", l.phone, err)
		}
		return nil, fmt.Errorf("whatsapp: requesting a pairing code: %w", err)
	}
	l.expired = l.expiry(pairCodeLifetime)
	return &bridge.LoginStep{
		Type:    bridge.StepDisplay,
		Display: bridge.DisplayCode,
		Data:    code,
		Instructions: "On your phone, open the WhatsApp notification (or Settings → Linked devices → " +
			"Link a device → Link with phone number instead) and enter this code. " +
			"It expires in a few minutes.",
	}, nil
}

func (l *pairLogin) SubmitInput(context.Context, string) (*bridge.LoginStep, error) {
	return nil, errors.New("whatsapp: the pairing-code login takes no input")
}

// eventError is the user-facing error an event ends the login with, or nil.
func (l *pairLogin) eventError(evt any) error {
	switch e := evt.(type) {
	case *events.ClientOutdated:
		return bridge.NewUserError(msgClientOutdated)
	case *events.PairError:
		return bridge.NewUserError("pairing with WhatsApp failed: %v; send `login whatsapp <phone number>` again", e.Error)
	case *events.Disconnected:
		return bridge.NewUserError(msgPairCodeExpired)
	case *events.LoggedOut:
		return bridge.NewUserError("WhatsApp refused the login (%s); send `login whatsapp <phone number>` again", e.Reason.String())
	}
	return nil
}

// Wait returns done when the phone accepts the code, or why it did not.
func (l *pairLogin) Wait(ctx context.Context) (*bridge.LoginStep, error) {
	if l.expired == nil {
		return nil, errors.New("whatsapp: login not started")
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.done:
			return nil, bridge.NewUserError(msgLoginCancelled)
		case <-l.expired:
			l.Cancel()
			return nil, bridge.NewUserError(msgPairCodeExpired)
		case evt := <-l.events:
			if ps, ok := evt.(*events.PairSuccess); ok {
				jid := ps.ID
				if dev := l.client.DeviceJID(); dev != nil && !dev.IsEmpty() {
					jid = *dev
				}
				step, err := newLoginFromJID(&jid, l.client, l.paired)
				if err != nil {
					l.Cancel()
					return nil, err
				}
				l.handOver()
				return step, nil
			}
			if err := l.eventError(evt); err != nil {
				l.Cancel()
				return nil, err
			}
		}
	}
}

// handOver removes the login's event handler without disconnecting: the session now
// owns the client.
func (l *pairLogin) handOver() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.finished {
		return
	}
	l.finished = true
	close(l.done)
	l.client.RemoveEventHandler(l.handler)
}

// Cancel removes the event handler and disconnects.
func (l *pairLogin) Cancel() {
	l.mu.Lock()
	if l.finished {
		l.mu.Unlock()
		return
	}
	l.finished = true
	close(l.done)
	l.mu.Unlock()
	if l.handler != 0 {
		l.client.RemoveEventHandler(l.handler)
	}
	l.client.Disconnect()
}
