package relaybot

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
)

func parse(t *testing.T, text string) (*Config, error) {
	t.Helper()
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(text), &node); err != nil {
		t.Fatal(err)
	}
	return parseConfig(node.Content[0])
}

func TestParseConfig(t *testing.T) {
	cfg, err := parse(t, `
accounts:
  - name: support
    network: irc
    owner: "@support:example.org"
    assignees: ["@alice:example.org"]
    retention: 7d
  - name: wa
    network: whatsapp
    owner: "@org:example.org"
    power_level: 20
    retention: "0"
`)
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Accounts[0]; a.powerLevel != 50 || a.retention != 7*24*time.Hour {
		t.Errorf("defaults: power %d, retention %v", a.powerLevel, a.retention)
	}
	if a := cfg.Accounts[1]; a.powerLevel != 20 || a.retention != 0 {
		t.Errorf("explicit: power %d, retention %v", a.powerLevel, a.retention)
	}
	for _, tc := range []struct{ text, want string }{
		{`accounts: []`, "at least one relay account"},
		{`accounts: [{name: Support, network: irc, owner: "@s:x"}]`, "lower-case"},
		{`accounts: [{name: s, network: irc, owner: "@s:x"}, {name: s, network: irc, owner: "@t:x"}]`, "used twice"},
		{`accounts: [{name: s, owner: "@s:x"}]`, "network"},
		{`accounts: [{name: s, network: relaybot, owner: "@s:x"}]`, "network"},
		{`accounts: [{name: s, network: irc, owner: "support"}]`, "owner"},
		{`accounts: [{name: s, network: irc, owner: "@s:x", assignees: ["alice"]}]`, "not a Matrix user ID"},
		{`accounts: [{name: s, network: irc, owner: "@s:x", power_level: 101}]`, "power_level"},
		{`accounts: [{name: s, network: irc, owner: "@s:x", reactions: loud}]`, "reactions"},
		{`accounts: [{name: s, network: irc, owner: "@s:x", formats: {text: "{{.Sender"}}]`, "formats.text"},
		{`accounts: [{name: s, network: irc, owner: "@s:x", retention: forever}]`, "retention"},
	} {
		if _, err := parse(t, tc.text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to mention %q", tc.text, err, tc.want)
		}
	}
}

func TestAccountMatching(t *testing.T) {
	c := &Plugin{cfg: &Config{Accounts: []AccountConfig{
		{Name: "libera", Network: "irc", Owner: "@support:x", Login: "libera/@support:x"},
		{Name: "any", Network: "irc", Owner: "@other:x"},
		{Name: "wa", Network: "whatsapp", Owner: "@support:x"},
	}}}
	for _, tc := range []struct {
		key   bridge.PortalKey
		owner id.UserID
		want  string
	}{
		{bridge.PortalKey{Connector: "irc", ChatID: "libera/bob", Receiver: "libera/@support:x"}, "@support:x", "libera"},
		{bridge.PortalKey{Connector: "irc", ChatID: "oftc/bob", Receiver: "oftc/@support:x"}, "@support:x", ""},
		{bridge.PortalKey{Connector: "irc", ChatID: "oftc/bob", Receiver: "oftc/@other:x"}, "@other:x", "any"},
		{bridge.PortalKey{Connector: "whatsapp", ChatID: "1@s.whatsapp.net", Receiver: "2@s.whatsapp.net"}, "@support:x", "wa"},
		// Shared chats (channels) are never a relay account's new conversation.
		{bridge.PortalKey{Connector: "irc", ChatID: "libera/#go"}, "", ""},
	} {
		got := ""
		if a := c.account(&bridge.NewPortal{Key: tc.key, LoginOwner: tc.owner}); a != nil {
			got = a.Name
		}
		if got != tc.want {
			t.Errorf("%v owned by %s → %q, want %q", tc.key, tc.owner, got, tc.want)
		}
	}
}

func TestAgo(t *testing.T) {
	if got := ago(time.Time{}); got != "never" {
		t.Errorf("ago(zero) = %q", got)
	}
	if got := ago(time.Now().Add(-3 * time.Hour)); got != "3 h ago" {
		t.Errorf("ago(3h) = %q", got)
	}
}
