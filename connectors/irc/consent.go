package irc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
)

// consentTimeout is how long channel operators have to answer a plumb request.
const consentTimeout = 2 * time.Minute

// CheckPlumb implements bridge.PlumbCheckingNetwork: on networks configured so, the channel's
// operators are asked on IRC before a Matrix room is linked to their channel.
func (c *Connector) CheckPlumb(ctx context.Context, chat bridge.PortalKey, user id.UserID) error {
	pc, err := parseChatID(chat.ChatID)
	if err != nil || pc.channel == "" {
		return err
	}
	n, err := c.network(pc.network)
	if err != nil || !n.cfg.PlumbConsent {
		return err
	}
	if _, err = n.channelInfo(ctx, pc.channel); err != nil {
		return err
	}
	name := n.wantChannelName(pc.channel)
	answer := make(chan bool, 1)
	key := n.fold(name)
	n.mu.Lock()
	if _, busy := n.consents[key]; busy {
		n.mu.Unlock()
		return errors.New("the operators of this channel are already being asked; try again later")
	}
	n.consents[key] = answer
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.consents, key)
		n.mu.Unlock()
	}()
	bot := n.bot.Nick()
	ask := fmt.Sprintf("%s asks to link %s to a Matrix room. A channel operator can answer \"%s: allow\" or \"%s: deny\" within %s.",
		user, name, bot, bot, consentTimeout)
	if err = n.bot.Send(ctx, "PRIVMSG", name, ask); err != nil {
		return fmt.Errorf("asking the channel operators: %w", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, consentTimeout)
	defer cancel()
	select {
	case ok := <-answer:
		if !ok {
			return fmt.Errorf("the operators of %s declined", name)
		}
		return nil
	case <-waitCtx.Done():
		return fmt.Errorf("no operator of %s answered in time", name)
	}
}

// checkConsent looks at a channel line for an operator's answer to a pending question.
func (n *network) checkConsent(channel, nick, text string) {
	key := n.fold(channel)
	n.mu.Lock()
	answer, pending := n.consents[key]
	op := false
	if st := n.channels[key]; st != nil {
		op = strings.ContainsAny(st.members[n.fold(nick)].prefixes, "~&@")
	}
	n.mu.Unlock()
	if !pending || !op || n.bot == nil {
		return
	}
	addressed, rest, ok := strings.Cut(strings.TrimSpace(text), ":")
	if !ok || !n.bot.IsMe(strings.TrimSpace(addressed)) {
		return
	}
	switch strings.ToLower(strings.TrimSpace(rest)) {
	case "allow", "yes":
		select {
		case answer <- true:
		default:
		}
	case "deny", "no":
		select {
		case answer <- false:
		default:
		}
	}
}
