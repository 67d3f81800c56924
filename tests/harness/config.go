package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// BridgeConfigParams are the values WriteBridgeConfig puts into a bridge config.
// Zero values get the defaults noted on each field.
type BridgeConfigParams struct {
	// HomeserverURL and HomeserverDomain locate the homeserver (Homeserver.URL and
	// Homeserver.Domain).
	HomeserverURL    string
	HomeserverDomain string
	// Port is the loopback port the bridge listens on and the homeserver pushes to.
	Port int
	// ID is the appservice ID. Default "passerelle".
	ID string
	// DatabaseType is "sqlite" (default) or "postgres"; DatabaseURI is the SQLite file
	// path or the PostgreSQL URI.
	DatabaseType string
	DatabaseURI  string
	// CommandPrefix defaults to "!pass"; Retention to "30d".
	CommandPrefix string
	Retention     string
	// BridgeExtra adds or overrides keys of the bridge: section (e.g. max_queue).
	BridgeExtra map[string]any
	// Permissions maps a domain, user ID or "*" to a level. Default
	// {HomeserverDomain: "admin"}.
	Permissions map[string]string
	// DoublePuppetASToken, when set, adds double_puppet.secrets for HomeserverDomain
	// as "as_token:<token>" (see WriteDoublePuppetRegistration).
	DoublePuppetASToken string
	// DoublePuppetSecrets adds further double_puppet.secrets entries verbatim.
	DoublePuppetSecrets map[string]string
	// Connectors is emitted as the connectors: section, e.g.
	// {"loopback": {"network_url": "http://127.0.0.1:1234"}}.
	Connectors map[string]any
	// LogLevel defaults to "debug".
	LogLevel string
	// PublicAddress sets appservice.public_address (media links).
	PublicAddress string
	// MetricsListen, when set, opens the diagnostics listener there with the
	// profiler on (benchmarks take CPU profiles from it).
	MetricsListen string
}

// WriteBridgeConfig writes a passerelle config file built from c to path. The
// appservice tokens are left empty for GenerateRegistration to fill in.
func WriteBridgeConfig(path string, c BridgeConfigParams) error {
	if c.HomeserverURL == "" || c.HomeserverDomain == "" || c.Port == 0 {
		return fmt.Errorf("writing bridge config %s: HomeserverURL, HomeserverDomain and Port are required", path)
	}
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	listen := "127.0.0.1:" + strconv.Itoa(c.Port)
	bridge := map[string]any{
		"command_prefix": or(c.CommandPrefix, "!pass"),
		"retention":      or(c.Retention, "30d"),
		// The suites' Matrix users read rooms without crypto: portals stay clear unless
		// a test (tests/e2ee) asks for the product's default.
		"encryption": map[string]any{"default": false},
	}
	for k, v := range c.BridgeExtra {
		bridge[k] = v
	}
	perms := c.Permissions
	if perms == nil {
		perms = map[string]string{c.HomeserverDomain: "admin"}
	}
	connectors := c.Connectors
	if connectors == nil {
		connectors = map[string]any{}
	}
	cfg := map[string]any{
		"homeserver": map[string]any{"address": c.HomeserverURL, "domain": c.HomeserverDomain},
		"appservice": map[string]any{
			"address":  "http://" + listen,
			"listen":   listen,
			"id":       or(c.ID, "passerelle"),
			"bot":      map[string]any{"username": "passerelle", "displayname": "Passerelle"},
			"as_token": "",
			"hs_token": "",
		},
		"database":    map[string]any{"type": or(c.DatabaseType, "sqlite"), "uri": c.DatabaseURI},
		"bridge":      bridge,
		"permissions": perms,
		"connectors":  connectors,
		"logging":     map[string]any{"level": or(c.LogLevel, "debug")},
	}
	if c.MetricsListen != "" {
		cfg["metrics"] = map[string]any{"listen": c.MetricsListen, "pprof": true}
	}
	if c.PublicAddress != "" {
		cfg["appservice"].(map[string]any)["public_address"] = c.PublicAddress
	}
	secrets := map[string]string{}
	for k, v := range c.DoublePuppetSecrets {
		secrets[k] = v
	}
	if c.DoublePuppetASToken != "" {
		secrets[c.HomeserverDomain] = "as_token:" + c.DoublePuppetASToken
	}
	if len(secrets) > 0 {
		cfg["double_puppet"] = map[string]any{"secrets": secrets}
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding bridge config: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing bridge config: %w", err)
	}
	return nil
}

// GenerateRegistration runs `bin generate-registration -c configPath -o regPath`,
// which writes the appservice registration for the homeserver (and the generated
// tokens back into the config).
func GenerateRegistration(ctx context.Context, bin, configPath, regPath string) error {
	cmd := exec.CommandContext(ctx, bin, "generate-registration", "-c", configPath, "-o", regPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("generating registration with %s: %w\n%s", bin, err, out)
	}
	return nil
}

// WriteDoublePuppetRegistration writes an appservice registration whose only purpose
// is double puppeting: id passerelle-doublepuppet, sender_localpart doublepuppet, an
// empty url, and one non-exclusive user namespace covering every user of domain. It
// returns the as_token to put in the bridge config (DoublePuppetASToken).
//
// The empty url is deliberate: Dendrite v0.15 accepts it and never pushes
// transactions (or user/alias queries) to an appservice without a url, so nothing
// retries against an endpoint that does not exist. Masquerading with
// ?user_id= works for any registered account the namespace covers.
func WriteDoublePuppetRegistration(path, domain string) (asToken string, err error) {
	asToken = randomHex(32)
	reg := map[string]any{
		"id":               "passerelle-doublepuppet",
		"url":              "",
		"as_token":         asToken,
		"hs_token":         randomHex(32),
		"sender_localpart": "doublepuppet",
		"rate_limited":     false,
		"namespaces": map[string]any{
			"users": []any{map[string]any{
				"exclusive": false,
				"regex":     "@.*:" + regexp.QuoteMeta(domain),
			}},
		},
	}
	data, err := yaml.Marshal(reg)
	if err != nil {
		return "", fmt.Errorf("encoding double-puppet registration: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("writing double-puppet registration: %w", err)
	}
	return asToken, nil
}
