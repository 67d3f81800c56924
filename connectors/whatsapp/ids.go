package whatsapp

import (
	"context"
	"fmt"
	"strings"

	"github.com/passerelle/passerelle/bridge"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
)

// Remote IDs. A contact's ghost is keyed on their phone number whenever it is known
// ("33612345678"), and on their hidden ID only when WhatsApp has not told us the
// number ("lid-123456789"). Every JID goes through canonicalUser first, which uses
// whatsmeow's LID↔phone mapping, so one contact never becomes two ghosts or two DMs.
const lidPrefix = "lid-"

// canonicalUser maps a user JID to its phone-number JID when the mapping is known.
func canonicalUser(ctx context.Context, dev *store.Device, jid types.JID) types.JID {
	jid = jid.ToNonAD()
	if jid.Server == types.HiddenUserServer && dev != nil && dev.LIDs != nil {
		if pn, err := dev.LIDs.GetPNForLID(ctx, jid); err == nil && !pn.IsEmpty() {
			return pn.ToNonAD()
		}
	}
	return jid
}

// ghostID is the remote ID of a (canonical) user JID.
func ghostID(jid types.JID) bridge.RemoteUserID {
	if jid.Server == types.HiddenUserServer {
		return bridge.RemoteUserID(lidPrefix + jid.User)
	}
	return bridge.RemoteUserID(jid.User)
}

// parseGhostID turns a ghost remote ID back into a JID.
func parseGhostID(remoteID bridge.RemoteUserID) (types.JID, error) {
	if rest, ok := strings.CutPrefix(string(remoteID), lidPrefix); ok && isDigits(rest) {
		return types.NewJID(rest, types.HiddenUserServer), nil
	}
	if isDigits(string(remoteID)) {
		return types.NewJID(string(remoteID), types.DefaultUserServer), nil
	}
	return types.EmptyJID, fmt.Errorf("%q is not a WhatsApp user", remoteID)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// chatID is a portal's chat ID: the canonical JID of the other user for a DM, the
// group's JID otherwise.
func chatID(ctx context.Context, dev *store.Device, chat types.JID) bridge.ChatID {
	if chat.Server == types.DefaultUserServer || chat.Server == types.HiddenUserServer {
		return bridge.ChatID(canonicalUser(ctx, dev, chat).String())
	}
	return bridge.ChatID(chat.ToNonAD().String())
}

// parseChatID returns the JID a portal's chat ID names.
func parseChatID(id bridge.ChatID) (types.JID, error) {
	jid, err := types.ParseJID(string(id))
	if err != nil {
		return types.EmptyJID, fmt.Errorf("parsing WhatsApp chat %q: %w", id, err)
	}
	return jid, nil
}

// isDMChat says whether a chat JID is a one-to-one chat.
func isDMChat(jid types.JID) bool {
	return jid.Server == types.DefaultUserServer || jid.Server == types.HiddenUserServer
}

// loginID is a login's ID: the account's phone JID without a device part, so logging
// in again with the same account replaces the old link instead of adding a login.
func loginID(device types.JID) bridge.LoginID { return bridge.LoginID(device.ToNonAD().String()) }
