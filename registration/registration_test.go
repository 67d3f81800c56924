package registration

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"maunium.net/go/mautrix/appservice"

	"github.com/passerelle/passerelle/bridge/config"
)

const cfgYAML = `homeserver:
  address: http://localhost:8008
  domain: example.org
appservice:
  address: http://localhost:29300
  listen: 127.0.0.1:29300
  as_token: ASTOKEN-secret
  hs_token: HSTOKEN-secret
  bot:
    username: pass.bot
connectors:
  whatsapp:
    username_template: "wa_{{.}}"
    alias_template: "wa.{{.}}+x"
  irc: {}
  relaybot:
    enabled: false
`

func loadCfg(t *testing.T, content string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func regexes(l appservice.NamespaceList) []string {
	var out []string
	for _, ns := range l {
		if !ns.Exclusive {
			out = append(out, "NON-EXCLUSIVE "+ns.Regex)
		} else {
			out = append(out, ns.Regex)
		}
	}
	return out
}

func TestBuild(t *testing.T) {
	cfg := loadCfg(t, cfgYAML)
	reg, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if reg.ID != "passerelle" || reg.URL != "http://localhost:29300" || reg.SenderLocalpart != "pass.bot" {
		t.Errorf("reg = %+v", reg)
	}
	if reg.AppToken != "ASTOKEN-secret" || reg.ServerToken != "HSTOKEN-secret" {
		t.Error("tokens not copied")
	}
	if reg.RateLimited == nil || *reg.RateLimited {
		t.Error("rate_limited is not false")
	}
	if !reg.EphemeralEvents || !reg.SoruEphemeralEvents {
		t.Error("ephemeral events not requested")
	}
	wantUsers := []string{`^@irc_.*:example\.org$`, `^@pass\.bot:example\.org$`, `^@wa_.*:example\.org$`}
	if got := regexes(reg.Namespaces.UserIDs); strings.Join(got, " ") != strings.Join(wantUsers, " ") {
		t.Errorf("users = %q, want %q", got, wantUsers)
	}
	wantAliases := []string{`^#irc_.*:example\.org$`, `^#wa\..*\+x:example\.org$`}
	if got := regexes(reg.Namespaces.RoomAliases); strings.Join(got, " ") != strings.Join(wantAliases, " ") {
		t.Errorf("aliases = %q, want %q", got, wantAliases)
	}
	// The regexes match what they should and nothing else.
	matches := map[string]bool{
		"@irc_libera_bob:example.org": true,
		"@pass.bot:example.org":       true,
		"@passXbot:example.org":       false,
		"@irc_bob:example.org.evil":   false,
		"@wa_123:example.org":         true,
		"@relaybot_x:example.org":     false,
	}
	for id, want := range matches {
		got := false
		for _, ns := range reg.Namespaces.UserIDs {
			if regexp.MustCompile(ns.Regex).MatchString(id) {
				got = true
			}
		}
		if got != want {
			t.Errorf("%s matched = %v, want %v", id, got, want)
		}
	}
	yaml, err := reg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"receive_ephemeral: true", "de.sorunome.msc2409.push_ephemeral: true", "rate_limited: false"} {
		if !strings.Contains(yaml, key) {
			t.Errorf("registration YAML lacks %q:\n%s", key, yaml)
		}
	}
}

func TestBuildDeterministic(t *testing.T) {
	cfg := loadCfg(t, cfgYAML)
	first, _ := Build(cfg)
	a, _ := first.YAML()
	for range 10 {
		reg, _ := Build(cfg)
		b, _ := reg.YAML()
		if a != b {
			t.Fatalf("Build is not deterministic:\n%s\n---\n%s", a, b)
		}
	}
}

func TestBuildWithoutTokens(t *testing.T) {
	cfg := loadCfg(t, strings.NewReplacer("  as_token: ASTOKEN-secret\n", "", "  hs_token: HSTOKEN-secret\n", "").Replace(cfgYAML))
	if _, err := Build(cfg); err == nil || !strings.Contains(err.Error(), "as_token") {
		t.Errorf("got %v", err)
	}
}

func TestCheck(t *testing.T) {
	cfg := loadCfg(t, cfgYAML)
	good, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(cfg, good); err != nil {
		t.Fatalf("Check of a fresh registration: %v", err)
	}

	// Round trip through a file.
	path := filepath.Join(t.TempDir(), "registration.yaml")
	if err := Write(path, good); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", fi.Mode().Perm())
	}
	loaded, err := appservice.LoadRegistration(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(cfg, loaded); err != nil {
		t.Fatalf("Check of a written registration: %v", err)
	}

	bad, _ := Build(cfg)
	bad.ServerToken = "other-hs"
	bad.URL = "http://elsewhere:1"
	bad.Namespaces.UserIDs = bad.Namespaces.UserIDs[1:] // drop ^@irc_
	bad.Namespaces.RoomAliases[0].Exclusive = false
	bad.Namespaces.RoomAliases = append(bad.Namespaces.RoomAliases, appservice.Namespace{Regex: "^#old_.*:example\\.org$", Exclusive: true})
	err = Check(cfg, bad)
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("got %v, want a *MismatchError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"disagrees with the config",
		"hs_token differs",
		"url differs",
		`user namespace "^@irc_.*:example\\.org$" missing`,
		`alias namespace "^#irc_.*:example\\.org$" is not exclusive`,
		`alias namespace "^#old_.*:example\\.org$" not in the config`,
		"run generate-registration again",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not contain %q", msg, want)
		}
	}
	for _, secret := range []string{"HSTOKEN-secret", "other-hs", "ASTOKEN-secret"} {
		if strings.Contains(msg, secret) {
			t.Errorf("message leaks a token: %q", msg)
		}
	}
	if strings.Contains(msg, "as_token") {
		t.Errorf("as_token reported as different: %q", msg)
	}
	me.File = "registration.yaml"
	if !strings.HasPrefix(me.Error(), "registration.yaml disagrees with the config: ") {
		t.Errorf("got %q", me.Error())
	}
}

func TestGenerateTokens(t *testing.T) {
	as, hs := GenerateTokens()
	re := regexp.MustCompile(`^[A-Za-z0-9]{64}$`)
	if !re.MatchString(as) || !re.MatchString(hs) {
		t.Errorf("tokens %q %q are not 64 alphanumerics", as, hs)
	}
	if as == hs {
		t.Error("tokens are equal")
	}
	as2, _ := GenerateTokens()
	if as == as2 {
		t.Error("tokens repeat")
	}
}

// TestPluginsClaimNothing: a plugin (the relay bot) has no ghosts or aliases, so the
// registration claims no namespace for it; a registration written when it still did
// is accepted, so upgrading does not stop the bridge.
func TestPluginsClaimNothing(t *testing.T) {
	cfg := loadCfg(t, strings.Replace(cfgYAML, "relaybot:\n    enabled: false", "relaybot: {}", 1))
	reg, err := Build(cfg, "relaybot")
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range append(reg.Namespaces.UserIDs, reg.Namespaces.RoomAliases...) {
		if strings.Contains(ns.Regex, "relaybot") {
			t.Fatalf("the plugin claims %q", ns.Regex)
		}
	}
	if err = Check(cfg, reg, "relaybot"); err != nil {
		t.Fatalf("a fresh registration does not pass: %v", err)
	}
	legacy, err := Build(cfg) // as before: every connector claimed its namespaces
	if err != nil {
		t.Fatal(err)
	}
	if len(legacy.Namespaces.UserIDs) != len(reg.Namespaces.UserIDs)+1 {
		t.Fatalf("legacy registration has %d user namespaces, want %d", len(legacy.Namespaces.UserIDs), len(reg.Namespaces.UserIDs)+1)
	}
	if err = Check(cfg, legacy, "relaybot"); err != nil {
		t.Fatalf("an older registration claiming the plugin's namespaces is refused: %v", err)
	}
}
