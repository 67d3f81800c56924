package relaybot

import (
	"context"
	"errors"
	"fmt"
	"html"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
)

// Commands implements bridge.CommandPlugin.
func (c *Plugin) Commands() []bridge.ConnectorCommand {
	return []bridge.ConnectorCommand{
		{Name: "assign", Usage: "assign [room] <user>", Help: "add a Matrix user to a relay conversation", Fn: c.cmdAssign},
		{Name: "unassign", Usage: "unassign [room] <user>", Help: "take a Matrix user out of a relay conversation", Fn: c.cmdUnassign},
		{Name: "close", Usage: "close [room]", Help: "close a relay conversation (the contact's next message opens a new one)", Fn: c.cmdClose},
		{Name: "contacts", Usage: "contacts", Help: "list the open relay conversations you administer", Fn: c.cmdContacts},
	}
}

// accountByName returns a configured account.
func (c *Plugin) accountByName(name string) *AccountConfig {
	for i := range c.cfg.Accounts {
		if c.cfg.Accounts[i].Name == name {
			return &c.cfg.Accounts[i]
		}
	}
	return nil
}

// administers says whether the caller may manage an account's conversations.
func administers(call *bridge.CommandCall, a *AccountConfig) bool {
	if call.IsAdmin {
		return true
	}
	for _, u := range a.Admins {
		if u == call.Sender {
			return true
		}
	}
	return false
}

// target finds the conversation a command names: a room ID or matrix.to link given as
// the first argument, or the room the command was sent in. It returns the remaining
// arguments.
func (c *Plugin) target(ctx context.Context, call *bridge.CommandCall, wantArgs int) (*conversation, *AccountConfig, []string, error) {
	args := call.Args
	room := call.RoomID
	if len(args) > wantArgs {
		room = id.RoomID(args[0])
		// The lobby's links (and any matrix.to link) name the room too.
		if parsed, err := id.ParseMatrixToURL(args[0]); err == nil && parsed.RoomID() != "" {
			room = parsed.RoomID()
		}
		args = args[1:]
	}
	conv, err := c.store.conversation(ctx, room)
	if err != nil {
		return nil, nil, nil, err
	}
	if conv == nil {
		return nil, nil, nil, bridge.NewUserError("%s is not an open relay conversation; name one with its room ID (see `contacts`)", room)
	}
	a := c.accountByName(conv.Account)
	if a == nil || !administers(call, a) {
		return nil, nil, nil, bridge.NewUserError("only the admins of the %s relay account can do that", conv.Account)
	}
	return conv, a, args, nil
}

func parseUser(arg string) (id.UserID, error) {
	user := id.UserID(arg)
	if parsed, err := id.ParseMatrixToURL(arg); err == nil && parsed.UserID() != "" {
		user = parsed.UserID()
	}
	if _, _, err := user.Parse(); err != nil || !strings.HasPrefix(string(user), "@") {
		return "", bridge.NewUserError("%q is not a Matrix user ID", arg)
	}
	return user, nil
}

func (c *Plugin) cmdAssign(ctx context.Context, call *bridge.CommandCall) error {
	if len(call.Args) < 1 || len(call.Args) > 2 {
		return bridge.NewUserError("Usage: `assign [room] <user>`")
	}
	conv, a, args, err := c.target(ctx, call, 1)
	if err != nil {
		return err
	}
	user, err := parseUser(args[0])
	if err != nil {
		return err
	}
	if err = c.host.InviteUser(ctx, conv.RoomID, user, a.powerLevel); err != nil {
		return err
	}
	if err = c.store.addAssignee(ctx, conv.RoomID, user); err != nil {
		return err
	}
	call.Reply(ctx, fmt.Sprintf("Assigned %s to the conversation with %s.", user, conv.Contact))
	return nil
}

func (c *Plugin) cmdUnassign(ctx context.Context, call *bridge.CommandCall) error {
	if len(call.Args) < 1 || len(call.Args) > 2 {
		return bridge.NewUserError("Usage: `unassign [room] <user>`")
	}
	conv, _, args, err := c.target(ctx, call, 1)
	if err != nil {
		return err
	}
	user, err := parseUser(args[0])
	if err != nil {
		return err
	}
	removed, err := c.store.removeAssignee(ctx, conv.RoomID, user)
	if err != nil {
		return err
	}
	if !removed {
		return bridge.NewUserError("%s is not assigned to the conversation with %s", user, conv.Contact)
	}
	if err = c.host.RemoveUser(ctx, conv.RoomID, user, "unassigned"); err != nil {
		return err
	}
	call.Reply(ctx, fmt.Sprintf("Unassigned %s from the conversation with %s.", user, conv.Contact))
	return nil
}

func (c *Plugin) cmdClose(ctx context.Context, call *bridge.CommandCall) error {
	if len(call.Args) > 1 {
		return bridge.NewUserError("Usage: `close [room]`")
	}
	conv, a, _, err := c.target(ctx, call, 0)
	if err != nil {
		return err
	}
	_ = c.host.RoomNotice(ctx, conv.RoomID, fmt.Sprintf("%s closed this conversation. The contact's next message opens a new one.", call.Sender), "")
	// A room already unlinked (a close cut short) is closed all the same.
	if err = c.host.CloseRoom(ctx, conv.RoomID, "conversation closed"); err != nil && !errors.Is(err, bridge.ErrRoomNotLinked) {
		return err
	}
	if err = c.store.close(ctx, conv.RoomID, a.retention); err != nil {
		return err
	}
	if call.RoomID != conv.RoomID {
		call.Reply(ctx, fmt.Sprintf("Closed the conversation with %s.", conv.Contact))
	}
	return nil
}

func (c *Plugin) cmdContacts(ctx context.Context, call *bridge.CommandCall) error {
	var b strings.Builder
	found := false
	for i := range c.cfg.Accounts {
		a := &c.cfg.Accounts[i]
		if !administers(call, a) {
			continue
		}
		found = true
		convs, err := c.store.open(ctx, a.Name)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s: %d open conversation(s)\n", a.Name, len(convs))
		for _, conv := range convs {
			last, err := c.host.LastActivity(ctx, conv.RoomID)
			if err != nil {
				return err
			}
			assignees := "nobody"
			if len(conv.Assignees) > 0 {
				names := make([]string, len(conv.Assignees))
				for i, u := range conv.Assignees {
					names[i] = u.String()
				}
				assignees = strings.Join(names, ", ")
			}
			fmt.Fprintf(&b, "- %s (%s): assigned to %s; last activity %s\n", conv.Contact, conv.RoomID, assignees, ago(last))
		}
	}
	if !found {
		return bridge.NewUserError("you administer no relay account")
	}
	call.Reply(ctx, strings.TrimSpace(b.String()))
	return nil
}

// ago says how long ago something happened, roughly.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	}
}

func escape(s string) string { return html.EscapeString(s) }
