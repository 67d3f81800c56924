package bridge

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

const testDoublePuppetValue = "passerelle-test"

func loopEvent(sender id.UserID, raw map[string]any) *event.Event {
	if raw == nil {
		raw = map[string]any{}
	}
	if _, ok := raw["body"]; !ok {
		raw["msgtype"], raw["body"] = "m.text", "hello"
	}
	return &event.Event{Sender: sender, Type: event.EventMessage, RoomID: "!room:example.org", ID: "$evt",
		Content: event.Content{Raw: raw}}
}

func TestLoopGuard(t *testing.T) {
	ours := map[id.UserID]bool{"@passerelle:example.org": true, "@irc_bob:example.org": true}
	isOurs := func(u id.UserID) bool { return ours[u] }
	patterns := []string{`^@telegram_[0-9]+:`, `^@_discord_.*:example\.org$`}
	tests := []struct {
		name         string
		bridgeOthers bool
		evt          *event.Event
		want         bool
	}{
		{"ordinary user", false, loopEvent("@alice:example.org", nil), false},
		{"our bot", false, loopEvent("@passerelle:example.org", nil), true},
		{"our ghost", false, loopEvent("@irc_bob:example.org", nil), true},
		{"our ghost even when bridging other bridges", true, loopEvent("@irc_bob:example.org", nil), true},
		{"our double puppet marker", false, loopEvent("@alice:example.org", map[string]any{appservice.DoublePuppetKey: testDoublePuppetValue}), true},
		{"another bridge's double puppet marker", false, loopEvent("@alice:example.org", map[string]any{appservice.DoublePuppetKey: "mautrix-telegram"}), false},
		{"empty double puppet marker", false, loopEvent("@alice:example.org", map[string]any{appservice.DoublePuppetKey: ""}), false},
		{"non-string double puppet marker", false, loopEvent("@alice:example.org", map[string]any{appservice.DoublePuppetKey: true}), false},
		{"other bridge ghost", false, loopEvent("@telegram_12345:example.org", nil), true},
		{"other bridge ghost on another server", false, loopEvent("@telegram_12345:other.example", nil), true},
		{"second pattern", false, loopEvent("@_discord_42:example.org", nil), true},
		{"near miss of a pattern", false, loopEvent("@telegram_bob:example.org", nil), false},
		{"anchored pattern, other server", false, loopEvent("@_discord_42:other.example", nil), false},
		{"other bridge ghost bridged when configured", true, loopEvent("@telegram_12345:example.org", nil), false},
		{"double puppet marker still ignored when bridging others", true, loopEvent("@alice:example.org", map[string]any{appservice.DoublePuppetKey: testDoublePuppetValue}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Bridge.OtherBridgePatterns = patterns
			cfg.Bridge.BridgeOtherBridges = tt.bridgeOthers
			lg, err := NewLoopGuard(cfg, testDoublePuppetValue)
			if err != nil {
				t.Fatal(err)
			}
			if got := lg.ShouldIgnore(tt.evt, isOurs); got != tt.want {
				t.Errorf("ShouldIgnore(sender %s, content %v) = %v, want %v", tt.evt.Sender, tt.evt.Content.Raw, got, tt.want)
			}
		})
	}
}

// A real event parsed from JSON, as it arrives in a transaction, carries the marker in
// Content.Raw too.
func TestLoopGuardParsedEvent(t *testing.T) {
	tests := []struct {
		name string
		json string
		want bool
	}{
		{"marked", `{"type":"m.room.message","sender":"@alice:example.org","room_id":"!r:example.org","event_id":"$1","content":{"msgtype":"m.text","body":"hi","` + appservice.DoublePuppetKey + `":"` + testDoublePuppetValue + `"}}`, true},
		{"unmarked", `{"type":"m.room.message","sender":"@alice:example.org","room_id":"!r:example.org","event_id":"$2","content":{"msgtype":"m.text","body":"hi"}}`, false},
	}
	lg, err := NewLoopGuard(testConfig(), testDoublePuppetValue)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		var evt event.Event
		if err := evt.UnmarshalJSON([]byte(tt.json)); err != nil {
			t.Fatal(err)
		}
		if got := lg.ShouldIgnore(&evt, func(id.UserID) bool { return false }); got != tt.want {
			t.Errorf("%s: ShouldIgnore = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestLoopGuardBadPattern(t *testing.T) {
	cfg := testConfig()
	cfg.Bridge.OtherBridgePatterns = []string{`^@ok_.*`, `^@broken_(`}
	if _, err := NewLoopGuard(cfg, testDoublePuppetValue); err == nil || !strings.Contains(err.Error(), "other_bridge_patterns") {
		t.Errorf("NewLoopGuard with an invalid pattern: error = %v", err)
	}
}

func TestIsCommandLike(t *testing.T) {
	tests := []struct {
		body string
		want bool
	}{
		{"!pb", true},
		{"!pb help", true},
		{"!pbx help", false},
		{" !pb help", false},
		{"hello !pb", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isCommandLike(tt.body, "!pb"); got != tt.want {
			t.Errorf("isCommandLike(%q) = %v, want %v", tt.body, got, tt.want)
		}
	}
}
