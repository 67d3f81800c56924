// Package registration builds Passerelle's appservice registration from the config and
// checks that an existing registration file still agrees with it.
package registration

import (
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"maunium.net/go/mautrix/appservice"

	"github.com/passerelle/passerelle/bridge/config"
)

// TokenLength is the length of generated tokens.
const TokenLength = 64

const alphanumeric = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// GenerateTokens returns a fresh appservice token and homeserver token, each
// TokenLength alphanumeric characters from crypto/rand.
func GenerateTokens() (as, hs string) {
	return randomToken(), randomToken()
}

func randomToken() string {
	out := make([]byte, 0, TokenLength)
	buf := make([]byte, TokenLength*2)
	// Rejection sampling: 248 = 4*62, so byte%62 is uniform over accepted bytes.
	for len(out) < TokenLength {
		_, _ = rand.Read(buf) // crypto/rand.Read never returns an error since Go 1.24
		for _, b := range buf {
			if b < 248 && len(out) < TokenLength {
				out = append(out, alphanumeric[b%62])
			}
		}
	}
	return string(out)
}

// Build makes the registration for cfg: the bot's user namespace plus, for each enabled
// network, one exclusive user namespace from its username_template and one exclusive
// alias namespace from its alias_template. Plugins (named in plugins) have no ghosts or
// aliases and claim nothing. Namespaces are sorted. The config's tokens must already be
// set.
func Build(cfg *config.Config, plugins ...string) (*appservice.Registration, error) {
	if cfg.AppService.ASToken == "" || cfg.AppService.HSToken == "" {
		return nil, errors.New("appservice.as_token and appservice.hs_token are empty (run generate-registration)")
	}
	domain := regexp.QuoteMeta(cfg.Homeserver.Domain)
	users := []string{"^@" + regexp.QuoteMeta(cfg.AppService.Bot.Username) + ":" + domain + "$"}
	var aliases []string
	names, err := cfg.EnabledConnectors()
	if err != nil {
		return nil, fmt.Errorf("building the registration: %w", err)
	}
	for _, name := range names {
		if slices.Contains(plugins, name) {
			continue
		}
		cc, err := cfg.ConnectorCommon(name)
		if err != nil {
			return nil, fmt.Errorf("building the registration: %w", err)
		}
		users = append(users, templateRegex("@", cc.UsernameTemplate, domain))
		aliases = append(aliases, templateRegex("#", cc.AliasTemplate, domain))
	}
	rateLimited := false
	reg := &appservice.Registration{
		ID:                  cfg.AppService.ID,
		URL:                 cfg.AppService.Address,
		AppToken:            cfg.AppService.ASToken,
		ServerToken:         cfg.AppService.HSToken,
		SenderLocalpart:     cfg.AppService.Bot.Username,
		RateLimited:         &rateLimited,
		EphemeralEvents:     true,
		SoruEphemeralEvents: true,
	}
	reg.Namespaces.UserIDs = exclusive(users)
	reg.Namespaces.RoomAliases = exclusive(aliases)
	return reg, nil
}

// templateRegex turns "irc_{{.}}" into "^@irc_.*:example\.org$" (sigil "@" or "#").
func templateRegex(sigil, tmpl, quotedDomain string) string {
	before, after := config.SplitIDTemplate(tmpl)
	return "^" + sigil + regexp.QuoteMeta(before) + ".*" + regexp.QuoteMeta(after) + ":" + quotedDomain + "$"
}

func exclusive(regexes []string) appservice.NamespaceList {
	if len(regexes) == 0 {
		return nil
	}
	slices.Sort(regexes)
	regexes = slices.Compact(regexes)
	list := make(appservice.NamespaceList, 0, len(regexes))
	for _, r := range regexes {
		list = append(list, appservice.Namespace{Regex: r, Exclusive: true})
	}
	return list
}

// MismatchError lists how a registration differs from what the config implies. Token
// values never appear in it.
type MismatchError struct {
	// File names the registration in the message; "registration" when empty.
	File string
	// Differences are short descriptions, e.g. `hs_token differs`.
	Differences []string
}

// Error implements error.
func (e *MismatchError) Error() string {
	file := e.File
	if file == "" {
		file = "the registration"
	}
	return fmt.Sprintf("%s disagrees with the config: %s (run generate-registration again)",
		file, strings.Join(e.Differences, "; "))
}

// Check compares reg with the registration cfg implies and returns a *MismatchError
// naming every difference, or nil when they agree. Registrations written before plugins
// stopped claiming namespaces still claim theirs: those are tolerated (they reserve IDs
// nobody uses), so an upgrade does not stop the bridge.
func Check(cfg *config.Config, reg *appservice.Registration, plugins ...string) error {
	want, err := Build(cfg, plugins...)
	if err != nil {
		return err
	}
	legacy := map[string]bool{}
	names, err := cfg.EnabledConnectors()
	if err != nil {
		return err
	}
	domain := regexp.QuoteMeta(cfg.Homeserver.Domain)
	for _, name := range names {
		if !slices.Contains(plugins, name) {
			continue
		}
		if cc, err := cfg.ConnectorCommon(name); err == nil {
			legacy[templateRegex("@", cc.UsernameTemplate, domain)] = true
			legacy[templateRegex("#", cc.AliasTemplate, domain)] = true
		}
	}
	var diffs []string
	differs := func(key string, ok bool) {
		if !ok {
			diffs = append(diffs, key+" differs")
		}
	}
	differs("id", reg.ID == want.ID)
	differs("url", reg.URL == want.URL)
	differs("as_token", reg.AppToken == want.AppToken)
	differs("hs_token", reg.ServerToken == want.ServerToken)
	differs("sender_localpart", reg.SenderLocalpart == want.SenderLocalpart)
	if reg.RateLimited == nil || *reg.RateLimited {
		diffs = append(diffs, "rate_limited is not false")
	}
	if !reg.EphemeralEvents && !reg.SoruEphemeralEvents {
		diffs = append(diffs, "receive_ephemeral is not true")
	}
	diffs = append(diffs, compareNamespaces("user", reg.Namespaces.UserIDs, want.Namespaces.UserIDs, legacy)...)
	diffs = append(diffs, compareNamespaces("alias", reg.Namespaces.RoomAliases, want.Namespaces.RoomAliases, legacy)...)
	for _, ns := range reg.Namespaces.RoomIDs {
		diffs = append(diffs, fmt.Sprintf("room namespace %q not in the config", ns.Regex))
	}
	if len(diffs) > 0 {
		return &MismatchError{Differences: diffs}
	}
	return nil
}

func compareNamespaces(kind string, got, want appservice.NamespaceList, tolerated map[string]bool) []string {
	var diffs []string
	have := map[string]bool{}
	for _, ns := range got {
		have[ns.Regex] = ns.Exclusive
	}
	wanted := map[string]bool{}
	for _, ns := range want {
		wanted[ns.Regex] = true
		excl, ok := have[ns.Regex]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s namespace %q missing", kind, ns.Regex))
		case !excl:
			diffs = append(diffs, fmt.Sprintf("%s namespace %q is not exclusive", kind, ns.Regex))
		}
	}
	for _, ns := range got {
		if !wanted[ns.Regex] && !tolerated[ns.Regex] {
			diffs = append(diffs, fmt.Sprintf("%s namespace %q not in the config", kind, ns.Regex))
		}
	}
	return diffs
}

// Write saves reg as YAML at path, atomically and with mode 0600 (it holds tokens).
func Write(path string, reg *appservice.Registration) error {
	data, err := reg.YAML()
	if err != nil {
		return fmt.Errorf("encoding the registration: %w", err)
	}
	return config.WriteFileAtomic(path, []byte(data), 0o600)
}
