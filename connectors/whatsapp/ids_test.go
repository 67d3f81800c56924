package whatsapp

import (
	"strings"
	"testing"

	"github.com/passerelle/passerelle/bridge"
	"go.mau.fi/whatsmeow/types"
	"gopkg.in/yaml.v3"
)

func TestGhostIDs(t *testing.T) {
	tests := []struct {
		jid  types.JID
		want string
	}{
		{types.NewJID("33612345678", types.DefaultUserServer), "33612345678"},
		{types.NewADJID("33612345678", 0, 4), "33612345678"},
		{types.NewJID("123456789", types.HiddenUserServer), "lid-123456789"},
	}
	for _, tt := range tests {
		got := ghostID(tt.jid.ToNonAD())
		if string(got) != tt.want {
			t.Errorf("ghostID(%s) = %q, want %q", tt.jid, got, tt.want)
		}
		back, err := parseGhostID(got)
		if err != nil || back != tt.jid.ToNonAD() {
			t.Errorf("parseGhostID(%q) = %s, %v; want %s", got, back, err, tt.jid.ToNonAD())
		}
	}
	for _, bad := range []string{"", "alice", "lid-", "lid-12a", "+336"} {
		if _, err := parseGhostID(bridge.RemoteUserID(bad)); err == nil {
			t.Errorf("parseGhostID(%q) accepted", bad)
		}
	}
	// Without a store, a LID stays a LID (nothing is guessed).
	lid := types.NewJID("42", types.HiddenUserServer)
	if got := canonicalUser(t.Context(), nil, lid); got != lid {
		t.Errorf("canonicalUser without mapping = %s", got)
	}
	if got := loginID(types.NewADJID("33612345678", 0, 9)); got != "33612345678@s.whatsapp.net" {
		t.Errorf("loginID = %q", got)
	}
}

func TestChatFiltering(t *testing.T) {
	s := &session{c: &Connector{cfg: &Config{}}}
	group := types.NewJID("1203630001", types.GroupServer)
	for _, tt := range []struct {
		chat types.JID
		skip bool
	}{
		{types.StatusBroadcastJID, true},
		{types.NewJID("1234", types.NewsletterServer), true},
		{types.NewJID("1234", types.BroadcastServer), true},
		{group, false},
		{types.NewJID("33612345678", types.DefaultUserServer), false},
	} {
		if got := s.skipChat(tt.chat); got != tt.skip {
			t.Errorf("skipChat(%s) = %v, want %v", tt.chat, got, tt.skip)
		}
	}
	s.c.cfg.BridgeStatusBroadcast = true
	if s.skipChat(types.StatusBroadcastJID) {
		t.Error("status broadcast skipped although bridge_status_broadcast is on")
	}
	// A broadcast-list message shows in the DM with its sender, as on the phone.
	bob := types.NewJID("33600000002", types.DefaultUserServer)
	list := types.NewJID("1600000000", types.BroadcastServer)
	if got := chatOf(types.MessageSource{Chat: list, Sender: bob}); got != bob {
		t.Errorf("chatOf(broadcast list) = %s, want the sender", got)
	}
	if got := chatOf(types.MessageSource{Chat: group, Sender: bob, IsGroup: true}); got != group {
		t.Errorf("chatOf(group) = %s", got)
	}
}

func TestParseGeoURI(t *testing.T) {
	lat, long, err := parseGeoURI("geo:48.8584,2.2945;u=35")
	if err != nil || lat != 48.8584 || long != 2.2945 {
		t.Errorf("parseGeoURI = %v, %v, %v", lat, long, err)
	}
	if lat, long, err = parseGeoURI("geo:-33.9,151.2,20"); err != nil || lat != -33.9 || long != 151.2 {
		t.Errorf("with altitude: %v, %v, %v", lat, long, err)
	}
	for _, bad := range []string{"", "48.8,2.2", "geo:48.8", "geo:95,2", "geo:a,b"} {
		if _, _, err := parseGeoURI(bad); err == nil {
			t.Errorf("parseGeoURI(%q) accepted", bad)
		}
	}
}

func TestMessageIDIsStable(t *testing.T) {
	a, b := messageID("txn-1"), messageID("txn-1")
	if a != b || messageID("txn-2") == a {
		t.Errorf("messageID not a function of the transaction: %s %s %s", a, b, messageID("txn-2"))
	}
	if !strings.HasPrefix(string(a), "3EB0") || len(a) != 22 {
		t.Errorf("messageID %q does not look like a WhatsApp web ID", a)
	}
}

func TestTimerText(t *testing.T) {
	for secs, want := range map[uint32]string{0: "turned off", 86400: "after 1 day", 604800: "after 7 days", 3600: "after 1 hour", 90: "after 1m30s"} {
		if got := timerText(secs); !strings.Contains(got, want) {
			t.Errorf("timerText(%d) = %q, want it to say %q", secs, got, want)
		}
	}
}

func TestParseConfig(t *testing.T) {
	parse := func(text string) (*Config, error) {
		var node yaml.Node
		if err := yaml.Unmarshal([]byte(text), &node); err != nil {
			t.Fatal(err)
		}
		return parseConfig(node.Content[0])
	}
	cfg, err := parse("bridge_status_broadcast: true")
	if err != nil || *cfg.HistoryCount != defaultHistoryCount || cfg.MaxMediaBytes != defaultMaxMediaBytes || !cfg.BridgeStatusBroadcast {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
	if cfg, err = parse("history_count: 0"); err != nil || *cfg.HistoryCount != 0 {
		t.Errorf("history_count 0 must turn backfill off: %+v, %v", cfg, err)
	}
	for _, bad := range []string{"history_count: -1", "max_media_bytes: -5", "history_count: lots"} {
		if _, err := parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
