package irc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
)

// LoginFlows implements bridge.Network. Puppets connect on demand without a login;
// this flow sets the nick and the SASL identity a user wants their puppet to use.
func (c *Connector) LoginFlows() []bridge.LoginFlow {
	return []bridge.LoginFlow{{ID: "identity", Name: "Nick and SASL account",
		Description: "choose your nick and identify with SASL: login irc <network>"}}
}

// StartLogin implements bridge.Network.
func (c *Connector) StartLogin(ctx context.Context, user id.UserID, flowID string, args []string) (bridge.LoginProcess, error) {
	if flowID != "identity" {
		return nil, fmt.Errorf("unknown login flow %q", flowID)
	}
	if len(args) != 1 {
		return nil, errors.New("say which network: login irc <network>")
	}
	n, err := c.network(strings.ToLower(args[0]))
	if err != nil {
		return nil, err
	}
	return &identityLogin{n: n, user: user}, nil
}

// identityLogin asks for a nick, a SASL account and its password.
type identityLogin struct {
	n       *network
	user    id.UserID
	step    int
	nick    string
	account string
}

// Start implements bridge.LoginProcess: the first step asks for the nick.
func (l *identityLogin) Start(ctx context.Context) (*bridge.LoginStep, error) {
	return &bridge.LoginStep{Type: bridge.StepInput, InputName: "nick",
		Instructions: fmt.Sprintf("Which nick do you want on %s? Send `-` to use %s.", l.n.cfg.Name, l.n.puppetNick(l.user))}, nil
}

// SubmitInput implements bridge.LoginProcess: nick, then SASL account, then password.
func (l *identityLogin) SubmitInput(ctx context.Context, input string) (*bridge.LoginStep, error) {
	input = strings.TrimSpace(input)
	switch l.step {
	case 0:
		if input != "-" {
			if nick := sanitizeNick(input, 30); nick != input {
				return nil, fmt.Errorf("%q is not a valid IRC nick (try %q)", input, nick)
			}
			l.nick = input
		}
		l.step++
		return &bridge.LoginStep{Type: bridge.StepInput, InputName: "SASL account",
			Instructions: "Your SASL account name (usually your registered nick), or `-` to connect without identifying."}, nil
	case 1:
		if input == "-" {
			return l.done(nil), nil
		}
		l.account = input
		l.step++
		return &bridge.LoginStep{Type: bridge.StepInput, InputName: "SASL password", InputSecret: true,
			Instructions: "Your SASL password. The bridge deletes your message right after reading it."}, nil
	default:
		if input == "" {
			return nil, errors.New("empty password")
		}
		return l.done(&puppetMeta{SASLUser: l.account, SASLPassword: input}), nil
	}
}

// done ends the login with the puppet login to store.
func (l *identityLogin) done(meta *puppetMeta) *bridge.LoginStep {
	nl := l.n.newPuppetLogin(l.user, l.nick, meta)
	return &bridge.LoginStep{Type: bridge.StepDone, Login: nl,
		Instructions: fmt.Sprintf("Saved: you are %s; your connection restarts with it.", nl.RemoteName)}
}

// Wait implements bridge.LoginProcess; this login only asks for input.
func (l *identityLogin) Wait(ctx context.Context) (*bridge.LoginStep, error) {
	return nil, errors.New("nothing to wait for")
}

// Cancel implements bridge.LoginProcess; nothing was opened yet.
func (l *identityLogin) Cancel() {}
