package bridge

import (
	"context"
	"errors"
	"strings"
	"testing"
	"text/template"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/config"
)

// fakeConnector is the smallest Connector, plus an AliasNetwork whose alias remainder is
// the chat ID.
type fakeConnector struct{ name string }

func (f *fakeConnector) Info() NetworkInfo {
	return NetworkInfo{Name: f.name, DisplayName: strings.ToUpper(f.name), ProtocolID: f.name}
}
func (f *fakeConnector) Init(context.Context, Host, *yaml.Node) error { return nil }
func (f *fakeConnector) Start(context.Context) error                  { return nil }
func (f *fakeConnector) Stop(context.Context)                         {}
func (f *fakeConnector) LoginFlows() []LoginFlow                      { return nil }
func (f *fakeConnector) StartLogin(context.Context, id.UserID, string, []string) (LoginProcess, error) {
	return nil, errors.New("no logins")
}
func (f *fakeConnector) LoadLogin(context.Context, *Login) (Session, error) {
	return nil, errors.New("no logins")
}
func (f *fakeConnector) ChatForAlias(_ context.Context, alias string) (*ChatInfo, error) {
	return &ChatInfo{Key: PortalKey{Connector: f.name, ChatID: ChatID(alias)}}, nil
}
func (f *fakeConnector) AliasFor(chat PortalKey) string { return string(chat.ChatID) }

var _ AliasNetwork = (*fakeConnector)(nil)

const testDomain = "example.org"

func testConfig() *config.Config {
	return &config.Config{Homeserver: config.HomeserverConfig{Address: "http://localhost:8008", Domain: testDomain}}
}

func newTestHost(t *testing.T, name, usernameTpl, aliasTpl string) *connectorHost {
	t.Helper()
	ch, err := newConnectorHost(&Bridge{Config: testConfig(), Log: zerolog.Nop()}, &fakeConnector{name: name},
		config.ConnectorCommon{UsernameTemplate: usernameTpl, AliasTemplate: aliasTpl, DisplaynameTemplate: "{{.}} (" + strings.ToUpper(name) + ")"})
	if err != nil {
		t.Fatalf("newConnectorHost: %v", err)
	}
	return ch
}

func TestGhostMXIDRoundTrip(t *testing.T) {
	hosts := []struct {
		name, tpl string
	}{
		{"prefix template", "irc_{{.}}"},
		{"suffix template", "{{.}}_irc"},
		{"prefix and suffix", "irc_{{.}}_x"},
	}
	remoteIDs := []string{
		"alice",
		"Alice",
		"ALICE",
		"alice smith",
		"#go-nuts",
		"libera/#go",
		"user:server",
		"bob_underscore",
		"__double__",
		"_",
		"zoë",
		"日本語",
		"emoji 🎉",
		"+33612345678@s.whatsapp.net",
		"=41",
		"a=b",
		"tab\there",
		"1",
	}
	for _, h := range hosts {
		t.Run(h.name, func(t *testing.T) {
			ch := newTestHost(t, "irc", h.tpl, "irc_{{.}}")
			seen := map[id.UserID]string{}
			for _, remote := range remoteIDs {
				mxid := ch.GhostMXID(RemoteUserID(remote))
				// Strict: the historical grammar every homeserver accepts.
				if _, server, err := mxid.ParseAndValidateStrict(); err != nil || server != testDomain {
					t.Errorf("GhostMXID(%q) = %q: not a valid user ID on %s (%v)", remote, mxid, testDomain, err)
				}
				if other, dup := seen[mxid]; dup {
					t.Errorf("GhostMXID(%q) = GhostMXID(%q) = %q", remote, other, mxid)
				}
				seen[mxid] = remote
				got, ok := ch.ParseGhostMXID(mxid)
				if !ok || got != RemoteUserID(remote) {
					t.Errorf("ParseGhostMXID(GhostMXID(%q) = %q) = %q, %v", remote, mxid, got, ok)
				}
			}
		})
	}
}

func TestGhostMXIDExamples(t *testing.T) {
	ch := newTestHost(t, "irc", "irc_{{.}}", "irc_{{.}}")
	tests := []struct {
		remote string
		want   id.UserID
	}{
		{"alice", "@irc_alice:example.org"},
		{"Alice", "@irc__alice:example.org"},
		{"a_b", "@irc_a__b:example.org"},
		{"a b", "@irc_a=20b:example.org"},
		{"#go", "@irc_=23go:example.org"},
		{"a:b", "@irc_a=3ab:example.org"},
	}
	for _, tt := range tests {
		if got := ch.GhostMXID(RemoteUserID(tt.remote)); got != tt.want {
			t.Errorf("GhostMXID(%q) = %q, want %q", tt.remote, got, tt.want)
		}
	}
}

func TestParseGhostMXIDRejects(t *testing.T) {
	irc := newTestHost(t, "irc", "irc_{{.}}", "irc_{{.}}")
	wa := newTestHost(t, "whatsapp", "whatsapp_{{.}}", "whatsapp_{{.}}")
	suffixed := newTestHost(t, "relaybot", "{{.}}_relay", "relay_{{.}}")
	tests := []struct {
		name string
		mxid id.UserID
	}{
		{"another connector's ghost", wa.GhostMXID("alice")},
		{"suffix template's ghost", suffixed.GhostMXID("alice")},
		{"another server", "@irc_alice:other.example"},
		{"same localpart on a server with a port", "@irc_alice:example.org:8448"},
		{"prefix only, empty remote ID", "@irc_:example.org"},
		{"no prefix", "@alice:example.org"},
		{"the bot", "@passerelle:example.org"},
		{"dangling underscore escape", "@irc_alice_:example.org"},
		{"bad escape after underscore", "@irc_a_1:example.org"},
		{"truncated hex escape", "@irc_a=2:example.org"},
		{"bad hex escape", "@irc_a=zz:example.org"},
		{"upper case in localpart", "@irc_Alice:example.org"},
		{"not a user ID", "!irc_alice:example.org"},
		{"no server", "@irc_alice"},
		{"empty", ""},
	}
	for _, tt := range tests {
		if got, ok := irc.ParseGhostMXID(tt.mxid); ok {
			t.Errorf("%s: ParseGhostMXID(%q) = %q, true; want rejected", tt.name, tt.mxid, got)
		}
	}
	// And the other connectors do recognise their own.
	if got, ok := wa.ParseGhostMXID(wa.GhostMXID("Bob")); !ok || got != "Bob" {
		t.Errorf("whatsapp ParseGhostMXID of its own ghost = %q, %v", got, ok)
	}
	if got, ok := suffixed.ParseGhostMXID("@bob_relay:example.org"); !ok || got != "bob" {
		t.Errorf("suffix template ParseGhostMXID = %q, %v", got, ok)
	}
}

func TestNewConnectorHostTemplates(t *testing.T) {
	tests := []struct {
		name            string
		common          config.ConnectorCommon
		wantErrContains string
	}{
		{"valid", config.ConnectorCommon{UsernameTemplate: "irc_{{.}}", AliasTemplate: "irc_{{.}}", DisplaynameTemplate: "{{.}}"}, ""},
		{"username without placeholder", config.ConnectorCommon{UsernameTemplate: "irc_", AliasTemplate: "irc_{{.}}", DisplaynameTemplate: "{{.}}"}, "username_template"},
		{"alias without placeholder", config.ConnectorCommon{UsernameTemplate: "irc_{{.}}", AliasTemplate: "irc", DisplaynameTemplate: "{{.}}"}, "alias_template"},
		{"broken displayname", config.ConnectorCommon{UsernameTemplate: "irc_{{.}}", AliasTemplate: "irc_{{.}}", DisplaynameTemplate: "{{.Foo"}, "displayname_template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newConnectorHost(&Bridge{Config: testConfig(), Log: zerolog.Nop()}, &fakeConnector{name: "irc"}, tt.common)
			if tt.wantErrContains == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErrContains) {
				t.Fatalf("error = %v, want one mentioning %s", err, tt.wantErrContains)
			}
		})
	}
}

func TestRenderDisplayname(t *testing.T) {
	ch := newTestHost(t, "irc", "irc_{{.}}", "irc_{{.}}")
	tests := []struct{ in, want string }{
		{"alice", "alice (IRC)"},
		{"Zoë <3", "Zoë <3 (IRC)"},
	}
	for _, tt := range tests {
		if got := ch.renderDisplayname(ghostName{Name: tt.in}); got != tt.want {
			t.Errorf("renderDisplayname(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Templates may use the identity details; {{.}} stays the name.
	tpl, err := template.New("d").Parse("{{.}}{{if .RealName}} ({{.RealName}}){{end}}{{if .Account}} [{{.Account}}]{{end}}")
	if err != nil {
		t.Fatal(err)
	}
	ch.displayname = tpl
	for _, c := range []struct {
		in   ghostName
		want string
	}{
		{ghostName{Name: "bob"}, "bob"},
		{ghostName{Name: "bob", RealName: "Bob Smith", Account: "robert"}, "bob (Bob Smith) [robert]"},
	} {
		if got := ch.renderDisplayname(c.in); got != c.want {
			t.Errorf("renderDisplayname(%+v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestAliasRoundTrip(t *testing.T) {
	hosts := []struct {
		name, tpl string
		example   id.RoomAlias // alias of chat "libera_#go-nuts"
	}{
		{"prefix", "irc_{{.}}", "#irc_libera_#go-nuts:example.org"},
		{"suffix", "{{.}}_irc", "#libera_#go-nuts_irc:example.org"},
		{"both", "irc_{{.}}_bridged", "#irc_libera_#go-nuts_bridged:example.org"},
	}
	chats := []string{"libera_#go-nuts", "oftc_#debian", "x", "Upper_Case", "ünïcode", "a#b#c"}
	for _, h := range hosts {
		t.Run(h.name, func(t *testing.T) {
			ch := newTestHost(t, "irc", "irc_{{.}}", h.tpl)
			if got := ch.aliasFor(PortalKey{Connector: "irc", ChatID: "libera_#go-nuts"}); got != h.example {
				t.Errorf("aliasFor = %q, want %q", got, h.example)
			}
			for _, chat := range chats {
				alias := ch.aliasFor(PortalKey{Connector: "irc", ChatID: ChatID(chat)})
				got, ok := ch.parseAlias(alias)
				if !ok || got != chat {
					t.Errorf("parseAlias(aliasFor(%q) = %q) = %q, %v", chat, alias, got, ok)
				}
			}
			if got := ch.aliasFor(PortalKey{Connector: "irc", ChatID: ""}); got != "" {
				t.Errorf("aliasFor(empty chat) = %q, want no alias", got)
			}
		})
	}
}

func TestParseAliasRejects(t *testing.T) {
	ch := newTestHost(t, "irc", "irc_{{.}}", "irc_{{.}}")
	tests := []struct {
		name  string
		alias id.RoomAlias
	}{
		{"other server", "#irc_libera_#go:other.example"},
		{"other template", "#whatsapp_123:example.org"},
		{"empty remainder", "#irc_:example.org"},
		{"no server", "#irc_libera"},
		{"empty", ""},
	}
	for _, tt := range tests {
		if got, ok := ch.parseAlias(tt.alias); ok {
			t.Errorf("%s: parseAlias(%q) = %q, true; want rejected", tt.name, tt.alias, got)
		}
	}
}
