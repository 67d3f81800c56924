package bridge

// Intake, loop guard: events our own ghosts, bot and double puppets sent are never
// bridged back; other bridges' users are bridged only when the config says so.

import (
	"fmt"
	"regexp"
	"strings"

	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/config"
)

// LoopGuard decides which Matrix events must never be bridged: our own bot's, our
// ghosts', the double-puppeted events we sent as real users, and (unless configured)
// other bridges' ghosts.
type LoopGuard struct {
	doublePuppetValue string
	otherBridges      []*regexp.Regexp
	bridgeOthers      bool
}

// NewLoopGuard compiles the config's other-bridge patterns.
func NewLoopGuard(cfg *config.Config, doublePuppetValue string) (*LoopGuard, error) {
	lg := &LoopGuard{doublePuppetValue: doublePuppetValue, bridgeOthers: cfg.Bridge.BridgeOtherBridges}
	for _, p := range cfg.Bridge.OtherBridgePatterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("bridge.other_bridge_patterns: %q: %w", p, err)
		}
		lg.otherBridges = append(lg.otherBridges, re)
	}
	return lg, nil
}

// ShouldIgnore says whether an event must not be bridged.
func (lg *LoopGuard) ShouldIgnore(evt *event.Event, isOurs func(id.UserID) bool) bool {
	if isOurs(evt.Sender) {
		return true
	}
	if src, ok := evt.Content.Raw[appservice.DoublePuppetKey].(string); ok && src == lg.doublePuppetValue {
		return true
	}
	if !lg.bridgeOthers {
		for _, re := range lg.otherBridges {
			if re.MatchString(evt.Sender.String()) {
				return true
			}
		}
	}
	return false
}

// isCommandLike says whether a body looks like a bridge command for prefix.
func isCommandLike(body, prefix string) bool {
	return strings.HasPrefix(body, prefix+" ") || body == prefix
}
