package bridge

// Commands: a prefix in rooms ("!pass help"), none in management rooms ("help").

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// CommandEvent is one command invocation.
type CommandEvent struct {
	Bridge  *Bridge
	RoomID  id.RoomID
	EventID id.EventID
	Sender  id.UserID
	Level   Level
	// InManagementRoom is true in the sender's DM with the bot.
	InManagementRoom bool
	Command          string
	Args             []string
}

// Reply sends a notice to the room the command came from.
func (ce *CommandEvent) Reply(ctx context.Context, format string, args ...any) {
	text := format
	if len(args) > 0 {
		text = fmt.Sprintf(format, args...)
	}
	if _, err := ce.Bridge.botNotice(ctx, ce.RoomID, text); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Sending command reply failed")
	}
}

// commandHandler is one command.
type commandHandler struct {
	Name    string
	Aliases []string
	Usage   string
	Help    string
	// Level is the minimum permission level to run it.
	Level Level
	// Where says where it may run: "any", "management" or "room" (a non-management room).
	Where string
	Fn    func(ctx context.Context, ce *CommandEvent) error
}

// CommandProcessor parses and dispatches commands.
type CommandProcessor struct {
	br       *Bridge
	handlers map[string]*commandHandler
	list     []*commandHandler
}

func newCommandProcessor(br *Bridge) *CommandProcessor {
	cp := &CommandProcessor{br: br, handlers: make(map[string]*commandHandler)}
	for _, h := range builtinCommands() {
		cp.list = append(cp.list, h)
		cp.handlers[h.Name] = h
		for _, a := range h.Aliases {
			cp.handlers[a] = h
		}
	}
	sort.Slice(cp.list, func(i, j int) bool { return cp.list[i].Name < cp.list[j].Name })
	return cp
}

// addConnectorCommands registers the commands connectors bring (relaybot's assign,
// close…). A name the core already has is refused: the core's commands win.
func (cp *CommandProcessor) addConnectorCommands(name string, cmds []ConnectorCommand) error {
	for _, c := range cmds {
		if cp.handlers[c.Name] != nil {
			return fmt.Errorf("connector %s: command %q already exists", name, c.Name)
		}
		fn := c.Fn
		// Relay-level users (an organisation's staff) may administer relay accounts:
		// the connector checks who may do what.
		h := &commandHandler{Name: c.Name, Usage: c.Usage, Help: c.Help, Level: LevelRelay, Where: "any",
			Fn: func(ctx context.Context, ce *CommandEvent) error {
				return fn(ctx, &CommandCall{Sender: ce.Sender, RoomID: ce.RoomID, IsAdmin: ce.Level >= LevelAdmin, Args: ce.Args,
					Reply: func(ctx context.Context, text string) { ce.Reply(ctx, "%s", text) }})
			}}
		cp.handlers[c.Name] = h
		cp.list = append(cp.list, h)
	}
	sort.Slice(cp.list, func(i, j int) bool { return cp.list[i].Name < cp.list[j].Name })
	return nil
}

// maybeHandle runs the message as a command if it is one. In the management room every
// text message is a command (or a pending login's input).
func (cp *CommandProcessor) maybeHandle(ctx context.Context, evt *event.Event, content *event.MessageEventContent) (bool, error) {
	if content.MsgType != event.MsgText || evt.Sender == cp.br.BotMXID() || cp.br.isBridgeUser(evt.Sender) {
		return false, nil
	}
	body := strings.TrimSpace(content.Body)
	prefix := cp.br.Config.Bridge.CommandPrefix
	hasPrefix := isCommandLike(body, prefix)
	owner, err := cp.br.DB.IsManagementRoom(ctx, evt.RoomID.String())
	if err != nil {
		return false, err
	}
	inMgmt := owner == evt.Sender.String()
	if !hasPrefix && !inMgmt {
		return false, nil
	}
	if hasPrefix {
		body = strings.TrimSpace(strings.TrimPrefix(body, prefix))
	} else if body != "cancel" && cp.br.submitLoginInput(ctx, evt.Sender, evt.RoomID, evt.ID, content.Body) {
		return true, nil
	} else if cp.br.answerAfterSecretQuestion(ctx, evt.Sender, evt.RoomID, evt.ID, body, cp.isCommand) {
		return true, nil
	}
	fields := strings.Fields(body)
	ce := &CommandEvent{Bridge: cp.br, RoomID: evt.RoomID, EventID: evt.ID, Sender: evt.Sender,
		Level: cp.br.perms.Level(evt.Sender), InManagementRoom: inMgmt}
	if len(fields) == 0 {
		fields = []string{"help"}
	}
	ce.Command = strings.ToLower(fields[0])
	ce.Args = fields[1:]
	log := zerolog.Ctx(ctx).With().Str("command", ce.Command).Logger()
	ctx = log.WithContext(ctx)
	if ce.Level < LevelRelay {
		ce.Reply(ctx, "You are not allowed to use this bridge.")
		return true, nil
	}
	h := cp.handlers[ce.Command]
	if h == nil || h.Level > ce.Level {
		ce.Reply(ctx, "Unknown command `%s`. Send `%s` to see what you can do.", ce.Command, cp.helpCommand(ce))
		return true, nil
	}
	if h.Where == "management" && !inMgmt {
		ce.Reply(ctx, "`%s` only works in your management room (a direct chat with %s).", h.Name, cp.br.BotMXID())
		return true, nil
	} else if h.Where == "room" && inMgmt {
		ce.Reply(ctx, "`%s` only works in the room you want to change, not in the management room.", h.Name)
		return true, nil
	}
	log.Debug().Msg("Running command")
	if err := h.Fn(ctx, ce); err != nil {
		var ue *userError
		var uu *usageError
		switch {
		case errors.As(err, &uu):
			ce.Reply(ctx, "Usage: `%s%s`", cp.commandPrefix(ce), h.Usage)
		case errors.As(err, &ue):
			ce.Reply(ctx, "%s", capitalize(ue.msg))
		default:
			log.Warn().Err(err).Msg("Command failed")
			ce.Reply(ctx, "The command failed: %v", err)
		}
	}
	return true, nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (cp *CommandProcessor) commandPrefix(ce *CommandEvent) string {
	if ce.InManagementRoom {
		return ""
	}
	return cp.br.Config.Bridge.CommandPrefix + " "
}

func (cp *CommandProcessor) helpCommand(ce *CommandEvent) string {
	return cp.commandPrefix(ce) + "help"
}

// usageError makes the processor print the command's usage.
type usageError struct{}

func (usageError) Error() string { return "bad usage" }

var errUsage = &usageError{}

func (cp *CommandProcessor) help(ctx context.Context, ce *CommandEvent) error {
	var sb strings.Builder
	sb.WriteString("Commands you can run")
	if ce.InManagementRoom {
		sb.WriteString(" (no prefix needed here)")
	} else {
		fmt.Fprintf(&sb, " (prefix them with `%s`)", cp.br.Config.Bridge.CommandPrefix)
	}
	sb.WriteString(":\n")
	for _, h := range cp.list {
		if h.Level > ce.Level {
			continue
		}
		if (h.Where == "management" && !ce.InManagementRoom) || (h.Where == "room" && ce.InManagementRoom) {
			continue
		}
		fmt.Fprintf(&sb, "• %s — %s\n", h.Usage, h.Help)
	}
	if len(cp.br.order) > 0 {
		fmt.Fprintf(&sb, "Networks: %s", strings.Join(cp.br.order, ", "))
	}
	ce.Reply(ctx, "%s", strings.TrimSpace(sb.String()))
	return nil
}

// isCommand says whether a word names a command (aliases included).
func (cp *CommandProcessor) isCommand(word string) bool { return cp.handlers[word] != nil }
