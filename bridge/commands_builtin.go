package bridge

// The built-in commands: help, login and logout, logins, ping, join, pm, plumb,
// unplumb, set-relay, unset-relay, version.

import (
	"context"
	"fmt"
	"strings"

	"github.com/passerelle/passerelle/bridge/database"
)

func builtinCommands() []*commandHandler {
	return []*commandHandler{
		{Name: "help", Usage: "help", Help: "show this list", Level: LevelRelay, Where: "any",
			Fn: func(ctx context.Context, ce *CommandEvent) error { return ce.Bridge.commands.help(ctx, ce) }},
		{Name: "version", Usage: "version", Help: "show the bridge version", Level: LevelRelay, Where: "any", Fn: cmdVersion},
		{Name: "login", Usage: "login <network> [flow] [arguments]", Help: "log in to a network", Level: LevelUser, Where: "management", Fn: cmdLogin},
		{Name: "cancel", Usage: "cancel", Help: "abort a login in progress", Level: LevelUser, Where: "management", Fn: cmdCancel},
		{Name: "logout", Usage: "logout <network> [login]", Help: "log out and delete what the bridge stored for that login", Level: LevelUser, Where: "management", Fn: cmdLogout},
		{Name: "logins", Aliases: []string{"list-logins"}, Usage: "logins", Help: "list your logins and their state", Level: LevelUser, Where: "management", Fn: cmdLogins},
		{Name: "ping", Usage: "ping", Help: "check the connection of each of your logins", Level: LevelUser, Where: "management", Fn: cmdLogins},
		{Name: "join", Aliases: []string{"open"}, Usage: "join <network> <chat>", Help: "open the portal of a remote chat and get invited", Level: LevelUser, Where: "any", Fn: cmdJoin},
		{Name: "pm", Aliases: []string{"dm"}, Usage: "pm <network> <user>", Help: "open a direct chat with a remote user", Level: LevelUser, Where: "any", Fn: cmdPM},
		{Name: "plumb", Usage: "plumb <network> <chat>", Help: "link this room to a remote chat", Level: LevelUser, Where: "room", Fn: cmdPlumb},
		{Name: "unplumb", Usage: "unplumb", Help: "unlink this room from its remote chat", Level: LevelUser, Where: "room", Fn: cmdUnplumb},
		{Name: "set-relay", Usage: "set-relay [login]", Help: "let members without a login of their own speak through your login here", Level: LevelUser, Where: "room", Fn: cmdSetRelay},
		{Name: "unset-relay", Usage: "unset-relay", Help: "stop relaying in this room", Level: LevelUser, Where: "room", Fn: cmdUnsetRelay},
	}
}

func cmdVersion(ctx context.Context, ce *CommandEvent) error {
	ce.Reply(ctx, "Passerelle %s", Version)
	return nil
}

// connectorArg takes the network name from the arguments.
func connectorArg(ce *CommandEvent) (*connectorHost, error) {
	if len(ce.Args) == 0 {
		return nil, errUsage
	}
	ch := ce.Bridge.connector(strings.ToLower(ce.Args[0]))
	if ch == nil {
		return nil, userErrorf("unknown network %q; available: %s", ce.Args[0], strings.Join(ce.Bridge.order, ", "))
	}
	return ch, nil
}

func cmdLogin(ctx context.Context, ce *CommandEvent) error {
	ch, err := connectorArg(ce)
	if err != nil {
		return err
	}
	flows := ch.conn.LoginFlows()
	if len(flows) == 0 {
		return userErrorf("%s has no login", ch.info.DisplayName)
	}
	flowID := flows[0].ID
	args := ce.Args[1:]
	if len(args) > 0 {
		for _, f := range flows {
			if strings.EqualFold(f.ID, args[0]) {
				flowID, args = f.ID, args[1:]
				break
			}
		}
	}
	return ce.Bridge.startLoginFlow(ctx, ch, ce.Sender, ce.RoomID, flowID, args)
}

func cmdCancel(ctx context.Context, ce *CommandEvent) error {
	if ce.Bridge.cancelLogin(ce.Sender) {
		ce.Reply(ctx, "Login cancelled.")
	} else {
		ce.Reply(ctx, "No login in progress.")
	}
	return nil
}

func cmdLogout(ctx context.Context, ce *CommandEvent) error {
	ch, err := connectorArg(ce)
	if err != nil {
		return err
	}
	logins, err := ce.Bridge.DB.LoginsOfUser(ctx, ce.Sender.String())
	if err != nil {
		return err
	}
	var match []*database.LoginRow
	for _, l := range logins {
		if l.Connector == ch.info.Name && (len(ce.Args) < 2 || l.LoginID == ce.Args[1]) {
			match = append(match, l)
		}
	}
	switch {
	case len(match) == 0:
		return userErrorf("you have no such %s login", ch.info.DisplayName)
	case len(match) > 1:
		ids := make([]string, len(match))
		for i, l := range match {
			ids[i] = l.LoginID
		}
		return userErrorf("you have several %s logins; say which: %s", ch.info.DisplayName, strings.Join(ids, ", "))
	}
	if err = ce.Bridge.logout(ctx, ch.info.Name, LoginID(match[0].LoginID)); err != nil {
		return userErrorf("%v", err)
	}
	ce.Reply(ctx, "Logged out of %s (%s).", ch.info.DisplayName, match[0].RemoteName)
	return nil
}

func cmdLogins(ctx context.Context, ce *CommandEvent) error {
	logins, err := ce.Bridge.DB.LoginsOfUser(ctx, ce.Sender.String())
	if err != nil {
		return err
	}
	if len(logins) == 0 {
		ce.Reply(ctx, "You have no logins. Send `login <network>` in your management room to add one.")
		return nil
	}
	var sb strings.Builder
	sb.WriteString("Your logins:\n")
	for _, l := range logins {
		state := SessionState(l.State)
		if ce.Bridge.session(l.Connector, LoginID(l.LoginID)) == nil && state == "" {
			state = StateDisconnected
		}
		fmt.Fprintf(&sb, "• %s: %s (%s) — %s", l.Connector, l.RemoteName, l.LoginID, stateText(state))
		if l.StateMessage != "" {
			fmt.Fprintf(&sb, ": %s", l.StateMessage)
		}
		sb.WriteString("\n")
	}
	ce.Reply(ctx, "%s", strings.TrimSpace(sb.String()))
	return nil
}

// userLogins returns the caller's live logins on a connector.
func userLogins(ctx context.Context, ce *CommandEvent, ch *connectorHost) ([]*Login, error) {
	rows, err := ce.Bridge.DB.LoginsOfUser(ctx, ce.Sender.String())
	if err != nil {
		return nil, err
	}
	var out []*Login
	for _, l := range rows {
		if l.Connector == ch.info.Name && ce.Bridge.session(l.Connector, LoginID(l.LoginID)) != nil {
			out = append(out, loginFromRow(l))
		}
	}
	return out, nil
}

// userLogin returns the caller's first live login on a connector, or nil.
func userLogin(ctx context.Context, ce *CommandEvent, ch *connectorHost) (*Login, error) {
	logins, err := userLogins(ctx, ce, ch)
	if err != nil || len(logins) == 0 {
		return nil, err
	}
	return logins[0], nil
}

func cmdJoin(ctx context.Context, ce *CommandEvent) error {
	ch, err := connectorArg(ce)
	if err != nil {
		return err
	}
	if len(ce.Args) < 2 {
		return errUsage
	}
	info, err := resolveChatArgs(ctx, ce, ch, "joined by name")
	if err != nil {
		return err
	}
	roomID, _, err := ce.Bridge.ensurePortalRoom(ctx, ch, info, ce.Sender, true, TriggerMatrix)
	if err != nil {
		return err
	}
	ce.Reply(ctx, "Invited you to %s: https://matrix.to/#/%s", displayChat(info), roomID)
	return nil
}

// resolveChatArgs turns a command's chat arguments into the chat, through the caller's
// login; what names the action in the refusal ("plumbed", "joined by name").
func resolveChatArgs(ctx context.Context, ce *CommandEvent, ch *connectorHost, what string) (*ChatInfo, error) {
	resolver, ok := ch.conn.(ChatResolvingNetwork)
	if !ok {
		return nil, userErrorf("%s chats cannot be %s", ch.info.DisplayName, what)
	}
	login, err := userLogin(ctx, ce, ch)
	if err != nil {
		return nil, err
	}
	info, err := resolver.ResolveChat(ctx, login, ce.Args[1:])
	if err != nil {
		return nil, userErrorf("%v", err)
	} else if info == nil {
		return nil, userErrorf("no such chat")
	}
	info.Key.Connector = ch.info.Name
	return info, nil
}

func displayChat(info *ChatInfo) string {
	if info.Name != "" {
		return info.Name
	}
	return string(info.Key.ChatID)
}

func cmdPM(ctx context.Context, ce *CommandEvent) error {
	ch, err := connectorArg(ce)
	if err != nil {
		return err
	}
	if len(ce.Args) < 2 {
		return errUsage
	}
	remoteUser := strings.Join(ce.Args[1:], " ")
	resolver, ok := ch.conn.(DMNetwork)
	if !ok {
		return userErrorf("%s does not support direct chats", ch.info.DisplayName)
	}
	logins, err := userLogins(ctx, ce, ch)
	if err != nil {
		return err
	} else if len(logins) == 0 {
		return userErrorf("you are not logged in to %s", ch.info.DisplayName)
	}
	// A user may have several logins (IRC: one per network): the first that can open
	// the chat wins.
	var info *ChatInfo
	for _, login := range logins {
		if info, err = resolver.DMChat(ctx, login, remoteUser); err == nil {
			break
		}
	}
	if err != nil {
		return userErrorf("%v", err)
	}
	info.Key.Connector = ch.info.Name
	info.IsDM = true
	if info.OtherUser == "" {
		info.OtherUser = RemoteUserID(remoteUser)
	}
	roomID, _, err := ce.Bridge.ensurePortalRoom(ctx, ch, info, ce.Sender, false, TriggerMatrix)
	if err != nil {
		return err
	}
	ce.Reply(ctx, "Invited you to the chat with %s: https://matrix.to/#/%s", displayChat(info), roomID)
	return nil
}

func cmdSetRelay(ctx context.Context, ce *CommandEvent) error {
	rc, err := ce.Bridge.bridgedRoom(ctx, ce.RoomID)
	if err != nil {
		return err
	} else if rc == nil {
		return userErrorf("this room is not bridged")
	}
	if err = ce.Bridge.requireRoomPower(ctx, ce, "set a relay"); err != nil {
		return err
	}
	logins, err := ce.Bridge.DB.LoginsOfConnector(ctx, rc.key.Connector)
	if err != nil {
		return err
	}
	var chosen *database.LoginRow
	for _, l := range logins {
		mine := l.MXID == ce.Sender.String()
		if !mine && ce.Level < LevelAdmin {
			continue
		}
		if len(ce.Args) > 0 && l.LoginID != ce.Args[0] {
			continue
		}
		if len(ce.Args) == 0 && !mine {
			continue
		}
		if !ce.Bridge.sessionReaches(ce.Bridge.session(l.Connector, LoginID(l.LoginID)), LoginID(l.LoginID), rc.key) {
			continue
		}
		chosen = l
		break
	}
	if chosen == nil {
		return userErrorf("no login of yours (or, for admins, the one named) can reach this chat")
	}
	if err = ce.Bridge.DB.SetRoomRelay(ctx, ce.RoomID.String(), chosen.LoginID, ""); err != nil {
		return err
	}
	ce.Reply(ctx, "Messages from members without their own %s login now go through %s.", rc.ch.info.DisplayName, chosen.RemoteName)
	return nil
}

func cmdUnsetRelay(ctx context.Context, ce *CommandEvent) error {
	rc, err := ce.Bridge.bridgedRoom(ctx, ce.RoomID)
	if err != nil {
		return err
	} else if rc == nil || rc.room.RelayLogin == "" {
		return userErrorf("this room has no relay")
	}
	relay, err := ce.Bridge.DB.GetLogin(ctx, rc.key.Connector, rc.room.RelayLogin)
	if err != nil {
		return err
	}
	// The relay's owner may always stop their account speaking for others; anyone
	// else needs to be a bridge admin.
	if ce.Level < LevelAdmin && (relay == nil || relay.MXID != ce.Sender.String()) {
		return userErrorf("only the relay's owner or a bridge admin can unset it")
	}
	if err = ce.Bridge.DB.SetRoomRelay(ctx, ce.RoomID.String(), "", ""); err != nil {
		return err
	}
	ce.Reply(ctx, "Relay disabled in this room.")
	return nil
}

// requireRoomPower checks the caller may change state in the Matrix room (bridge admins
// always may).
func (br *Bridge) requireRoomPower(ctx context.Context, ce *CommandEvent, what string) error {
	if ce.Level >= LevelAdmin {
		return nil
	}
	ok, err := br.canChangeState(ctx, ce.RoomID, ce.Sender)
	if err != nil {
		return err
	} else if !ok {
		return userErrorf("you need power to change this room's settings to %s", what)
	}
	return nil
}
