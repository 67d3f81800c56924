package irc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc/ircconn"
)

// Identifiers. Everything the core stores is casefolded, so #Go and #go are one portal
// and Bob and bob one ghost; display names keep the case people typed.
//
//	channel chat:  "<network>/<#channel>"              (shared: no receiver)
//	private chat:  "<network>/pm/<nick>"               (receiver: the puppet's login ID)
//	remote user:   "<network>.<nick>"   (network names and nicks have no '.', and it
//	                                     needs no escaping in ghost IDs: @irc_libera.bob)
//	puppet login:  "<network>/<@user:server>"

// puppetLoginID is the login ID of a Matrix user's puppet on a network.
func puppetLoginID(network, mxid string) bridge.LoginID { return bridge.LoginID(network + "/" + mxid) }

// foldFor returns the casefolding of a CASEMAPPING name (ircconn's), or nil for
// unknown ones.
func foldFor(casemapping string) func(string) string {
	if _, err := ircconn.Casefold(casemapping, "x"); err != nil {
		return nil
	}
	return func(s string) string {
		folded, err := ircconn.Casefold(casemapping, s)
		if err != nil {
			return s
		}
		return folded
	}
}

// fold casefolds per the network's casemapping, so IDs follow the server's rules.
func (n *network) fold(s string) string { return n.folder(s) }

// channelChatID is a channel's chat ID; folded, so every spelling is the same chat.
func (n *network) channelChatID(channel string) bridge.ChatID {
	return bridge.ChatID(n.cfg.Name + "/" + n.fold(channel))
}

// pmChatID is the chat ID of private messages with a nick.
func (n *network) pmChatID(nick string) bridge.ChatID {
	return bridge.ChatID(n.cfg.Name + "/pm/" + n.fold(nick))
}

// userID is a remote user's ID (their ghost's), from their folded nick.
func (n *network) userID(nick string) bridge.RemoteUserID {
	return bridge.RemoteUserID(n.cfg.Name + "." + n.fold(nick))
}

// parsedChat is a chat ID taken apart.
type parsedChat struct {
	network string
	channel string // set for channels
	nick    string // set for private chats
}

// parseChatID takes a chat ID apart into its network and channel or nick.
func parseChatID(chatID bridge.ChatID) (parsedChat, error) {
	network, rest, ok := strings.Cut(string(chatID), "/")
	if !ok || rest == "" {
		return parsedChat{}, fmt.Errorf("malformed IRC chat ID %q", chatID)
	}
	if nick, isPM := strings.CutPrefix(rest, "pm/"); isPM {
		return parsedChat{network: network, nick: nick}, nil
	}
	return parsedChat{network: network, channel: rest}, nil
}

// splitRemoteUser returns the network and nick of a remote user ID.
func splitRemoteUser(remoteID bridge.RemoteUserID) (network, nick string, ok bool) {
	network, nick, ok = strings.Cut(string(remoteID), ".")
	return network, nick, ok && nick != ""
}

// channelKey is a PortalKey for a channel.
func (n *network) channelKey(channel string) bridge.PortalKey {
	return bridge.PortalKey{Connector: connectorName, ChatID: n.channelChatID(channel)}
}

// lineID identifies an IRC line for the message map: the server's msgid when it gives
// one, else a hash of what identifies the line.
func lineID(msgid, network, target, nick, text, when string) bridge.RemoteMessageID {
	if msgid != "" {
		return bridge.RemoteMessageID("msgid:" + msgid)
	}
	h := sha256.Sum256([]byte(network + "\x00" + target + "\x00" + nick + "\x00" + text + "\x00" + when))
	return bridge.RemoteMessageID("h:" + hex.EncodeToString(h[:12]))
}

// sanitizeNick turns a Matrix-derived string into a valid IRC nick.
func sanitizeNick(s string, maxLen int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			strings.ContainsRune("[]\\`_^{|}-", r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	nick := b.String()
	if nick == "" || (nick[0] >= '0' && nick[0] <= '9') || nick[0] == '-' {
		nick = "M" + nick
	}
	if maxLen > 0 && len(nick) > maxLen {
		nick = nick[:maxLen]
	}
	return nick
}
