package bridge

// People, permissions: who may use the bridge, and how much (none < relay < user <
// admin), by user ID, server name or "*".

import (
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/config"
)

// Level is what a Matrix user may do with the bridge.
type Level int

const (
	// LevelNone may not use the bridge at all.
	LevelNone Level = iota
	// LevelRelay may talk in relay rooms (through someone else's login).
	LevelRelay
	// LevelUser may log in, open portals and plumb rooms they have power in.
	LevelUser
	// LevelAdmin may do everything, including set relays and manage others' logins.
	LevelAdmin
)

func (l Level) String() string {
	switch l {
	case LevelRelay:
		return config.LevelRelay
	case LevelUser:
		return config.LevelUser
	case LevelAdmin:
		return config.LevelAdmin
	default:
		return config.LevelNone
	}
}

func parseLevel(s string) (Level, error) {
	switch s {
	case config.LevelNone:
		return LevelNone, nil
	case config.LevelRelay:
		return LevelRelay, nil
	case config.LevelUser:
		return LevelUser, nil
	case config.LevelAdmin:
		return LevelAdmin, nil
	}
	return LevelNone, fmt.Errorf("unknown permission level %q", s)
}

// Permissions maps users to levels: an exact user ID wins over their server name, which
// wins over "*".
type Permissions struct {
	byKey map[string]Level
}

// NewPermissions reads the config's permissions map. An empty map allows the
// homeserver's own users.
func NewPermissions(cfg map[string]string, domain string) (*Permissions, error) {
	p := &Permissions{byKey: make(map[string]Level, len(cfg))}
	for k, v := range cfg {
		l, err := parseLevel(v)
		if err != nil {
			return nil, fmt.Errorf("permissions.%s: %w", k, err)
		}
		p.byKey[k] = l
	}
	if len(p.byKey) == 0 {
		p.byKey[domain] = LevelUser
	}
	return p, nil
}

// Level returns a user's level.
func (p *Permissions) Level(user id.UserID) Level {
	if l, ok := p.byKey[user.String()]; ok {
		return l
	}
	if l, ok := p.byKey[user.Homeserver()]; ok {
		return l
	}
	if l, ok := p.byKey["*"]; ok {
		return l
	}
	return LevelNone
}

// Admins lists the users named one by one at admin level: the people to tell about
// problems only an admin can fix (an outdated bridge).
func (p *Permissions) Admins() []id.UserID {
	var admins []id.UserID
	for k, l := range p.byKey {
		if l >= LevelAdmin && strings.HasPrefix(k, "@") {
			admins = append(admins, id.UserID(k))
		}
	}
	slices.Sort(admins)
	return admins
}
