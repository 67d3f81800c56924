package relaybot

import (
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"
)

// Config is connectors.relaybot.
type Config struct {
	Accounts []AccountConfig `yaml:"accounts"`
}

// AccountConfig is one relay account: a login of another connector that speaks for a
// team, with the policy its conversations get.
type AccountConfig struct {
	// Name is how commands and the lobby name the account ("support").
	Name string `yaml:"name"`
	// Network is the connector of the login ("irc", "whatsapp").
	Network string `yaml:"network"`
	// Owner is the Matrix user whose login is the relay account; Login picks one when
	// they have several on that network (IRC: one per network, "libera/@owner:example.org").
	Owner id.UserID `yaml:"owner"`
	Login string    `yaml:"login"`
	// Admins may assign, unassign, close and list conversations (bridge admins too).
	Admins []id.UserID `yaml:"admins"`
	// Assignees are invited to every new conversation; TeamRoom's members too.
	Assignees []id.UserID `yaml:"assignees"`
	TeamRoom  string      `yaml:"team_room"`
	// LobbyRoom lists new conversations with a link to each; default TeamRoom, else a
	// room the bridge creates for the admins and assignees.
	LobbyRoom string `yaml:"lobby_room"`
	// PowerLevel assignees get in conversations (default 50).
	PowerLevel *int `yaml:"power_level"`
	// Greeting is sent once to each new contact ("" for none).
	Greeting string `yaml:"greeting"`
	// Formats override bridge.relay_formats (text, notice, emote, media, edit, reaction).
	Formats map[string]string `yaml:"formats"`
	// SingleHandlerNoPrefix sends messages without the name prefix while one Matrix
	// user handles the conversation.
	SingleHandlerNoPrefix bool `yaml:"single_handler_no_prefix"`
	// Reactions: "drop" (default) or "text" (said in words with the reaction format).
	Reactions string `yaml:"reactions"`
	// Retention keeps a closed conversation's record (contact, assignees) this long
	// ("0" erases it at close). Default 30d.
	Retention string `yaml:"retention"`

	powerLevel int
	retention  time.Duration
}

var accountNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// parseConfig decodes and checks connectors.relaybot.
func parseConfig(node *yaml.Node) (*Config, error) {
	var cfg Config
	if node != nil && node.Kind != 0 {
		if err := node.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("connectors.relaybot: %w", err)
		}
	}
	if len(cfg.Accounts) == 0 {
		return nil, fmt.Errorf("connectors.relaybot.accounts: at least one relay account is needed")
	}
	seen := map[string]bool{}
	for i := range cfg.Accounts {
		a := &cfg.Accounts[i]
		key := fmt.Sprintf("connectors.relaybot.accounts[%d]", i)
		if !accountNameRe.MatchString(a.Name) {
			return nil, fmt.Errorf("%s.name: %q must be lower-case letters, digits, '-' and '_'", key, a.Name)
		}
		if seen[a.Name] {
			return nil, fmt.Errorf("%s.name: %q is used twice", key, a.Name)
		}
		seen[a.Name] = true
		if a.Network == "" || a.Network == pluginName {
			return nil, fmt.Errorf("%s.network: name the connector of the relay login (irc, whatsapp)", key)
		}
		if _, _, err := a.Owner.Parse(); err != nil || !strings.HasPrefix(string(a.Owner), "@") {
			return nil, fmt.Errorf("%s.owner: %q is not a Matrix user ID", key, a.Owner)
		}
		for _, list := range [][]id.UserID{a.Admins, a.Assignees} {
			for _, u := range list {
				if _, _, err := u.Parse(); err != nil || !strings.HasPrefix(string(u), "@") {
					return nil, fmt.Errorf("%s: %q is not a Matrix user ID", key, u)
				}
			}
		}
		a.powerLevel = 50
		if a.PowerLevel != nil {
			if *a.PowerLevel < 0 || *a.PowerLevel > 100 {
				return nil, fmt.Errorf("%s.power_level: %d is not between 0 and 100", key, *a.PowerLevel)
			}
			a.powerLevel = *a.PowerLevel
		}
		switch a.Reactions {
		case "", "drop", "text":
		default:
			return nil, fmt.Errorf("%s.reactions: %q (want drop or text)", key, a.Reactions)
		}
		for name, text := range a.Formats {
			if _, err := template.New(name).Parse(text); err != nil {
				return nil, fmt.Errorf("%s.formats.%s: %v", key, name, err)
			}
		}
		ret, err := parseRetention(a.Retention)
		if err != nil {
			return nil, fmt.Errorf("%s.retention: %v", key, err)
		}
		a.retention = ret
	}
	return &cfg, nil
}

// parseRetention reads "30d", "12h", "0".
func parseRetention(s string) (time.Duration, error) {
	switch {
	case s == "":
		return 30 * 24 * time.Hour, nil
	case s == "0":
		return 0, nil
	case strings.HasSuffix(s, "d"):
		var days int
		if _, err := fmt.Sscanf(s, "%dd", &days); err != nil || days < 0 || fmt.Sprintf("%dd", days) != s {
			return 0, fmt.Errorf("%q is not a duration like 30d, 12h or 0", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration like 30d, 12h or 0", s)
	}
	return d, nil
}
