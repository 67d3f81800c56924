package irc

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the connector's block in the bridge config (connectors.irc).
type Config struct {
	Networks []NetworkConfig `yaml:"networks"`
	// ConnectsPerSecond caps new connections for the whole bridge, so a mass
	// reconnect does not get the bridge throttled or K-lined.
	ConnectsPerSecond float64 `yaml:"connects_per_second"`
}

// NetworkConfig describes one IRC network.
type NetworkConfig struct {
	// Name is the short name used in aliases, commands and IDs ("libera").
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// FallbackAddresses are other servers of the network, rotated through when the
	// current one fails.
	FallbackAddresses []string `yaml:"fallback_addresses"`
	TLS               bool     `yaml:"tls"`
	// TLSInsecure skips certificate checks (test networks only).
	TLSInsecure    bool   `yaml:"tls_insecure"`
	ServerPassword string `yaml:"server_password"`
	// BotNick is the bridge bot's nick; SASL for the bot is optional.
	BotNick         string `yaml:"bot_nick"`
	BotSASLUser     string `yaml:"bot_sasl_user"`
	BotSASLPassword string `yaml:"bot_sasl_password"`
	// PuppetNick is a text/template over {{.Localpart}}, {{.UserID}}, {{.DisplayName}}
	// for Matrix users' nicks; made IRC-safe afterwards.
	PuppetNick string `yaml:"puppet_nick"`
	// Mode is "puppets" (a connection per Matrix user) or "relay" (everyone speaks
	// through the bot, with a name prefix or draft/relaymsg).
	Mode string `yaml:"mode"`
	// Portals allows portal rooms by alias/join; DMs allows private messages.
	Portals *bool `yaml:"portals"`
	DMs     *bool `yaml:"dms"`
	// MaxConnections bounds the puppet connections to this network.
	MaxConnections int `yaml:"max_connections"`
	// MessagesPerSecond and Burst are outgoing flood control per connection.
	MessagesPerSecond float64 `yaml:"messages_per_second"`
	Burst             int     `yaml:"burst"`
	// IdleTimeout disconnects a puppet idle for this long (0: never).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Channels are bridged at start (portals created, the bot joins them).
	Channels []string `yaml:"channels"`
	// PowerLevels maps channel prefixes to Matrix power levels.
	PowerLevels PowerLevelMap `yaml:"power_levels"`
	// MaxLines is how many IRC lines a Matrix message may take: a longer one goes as its
	// first line and a link to the whole text, instead of flooding the channel (refused
	// when the bridge serves no public links).
	MaxLines int `yaml:"max_lines"`
	// Casemapping is how the network compares nicks and channel names: rfc1459
	// (default), rfc1459-strict, ascii or rfc7613 — what the server announces as
	// CASEMAPPING.
	// IDs are built with it, so change it only before the network is first used.
	Casemapping string `yaml:"casemapping"`
	// PlumbConsent makes plumbing ask the channel's operators on IRC first.
	PlumbConsent bool `yaml:"plumb_consent"`
	// NetsplitGrace is how long users who quit in a netsplit may come back before
	// their ghosts leave (default 60s), so a split and rejoin is not a flood of events.
	NetsplitGrace time.Duration `yaml:"netsplit_grace"`
	// RedactionNotice, when set, is sent to IRC when a Matrix user deletes a message
	// ({{.Nick}} is available); empty sends nothing.
	RedactionNotice string `yaml:"redaction_notice"`
}

// PowerLevelMap maps channel membership prefixes to power levels.
type PowerLevelMap struct {
	Op     int `yaml:"op"`
	HalfOp int `yaml:"halfop"`
	Voice  int `yaml:"voice"`
}

// networkNameRe is what a network name may be: it goes into chat IDs, aliases and
// ghost IDs, so lower-case letters, digits and dashes only.
var networkNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// parseConfig decodes and checks the block, filling in defaults.
func parseConfig(node *yaml.Node) (*Config, error) {
	var cfg Config
	if node != nil && node.Kind != 0 {
		if err := node.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("connectors.irc: %w", err)
		}
	}
	if cfg.ConnectsPerSecond <= 0 {
		cfg.ConnectsPerSecond = 5
	}
	if len(cfg.Networks) == 0 {
		return nil, errors.New("connectors.irc.networks: at least one network is needed")
	}
	seen := map[string]bool{}
	for i := range cfg.Networks {
		n := &cfg.Networks[i]
		key := fmt.Sprintf("connectors.irc.networks[%d]", i)
		if !networkNameRe.MatchString(n.Name) {
			return nil, fmt.Errorf("%s.name: %q must be lower-case letters, digits and '-'", key, n.Name)
		}
		if seen[n.Name] {
			return nil, fmt.Errorf("%s.name: %q is used twice", key, n.Name)
		}
		seen[n.Name] = true
		if n.Address == "" || !strings.Contains(n.Address, ":") {
			return nil, fmt.Errorf("%s.address: want host:port, got %q", key, n.Address)
		}
		if foldFor(n.Casemapping) == nil {
			return nil, fmt.Errorf("%s.casemapping: %q (want rfc1459, rfc1459-strict, ascii or rfc7613)", key, n.Casemapping)
		}
		for j, a := range n.FallbackAddresses {
			if !strings.Contains(a, ":") {
				return nil, fmt.Errorf("%s.fallback_addresses[%d]: want host:port, got %q", key, j, a)
			}
		}
		if n.BotNick == "" {
			n.BotNick = "passerelle"
		}
		if n.PuppetNick == "" {
			n.PuppetNick = "{{.Localpart}}[m]"
		}
		if _, err := template.New("nick").Parse(n.PuppetNick); err != nil {
			return nil, fmt.Errorf("%s.puppet_nick: %w", key, err)
		}
		switch n.Mode {
		case "":
			n.Mode = "puppets"
		case "puppets", "relay":
		default:
			return nil, fmt.Errorf("%s.mode: %q (want puppets or relay)", key, n.Mode)
		}
		if n.MaxConnections <= 0 {
			n.MaxConnections = 1000
		}
		if n.MessagesPerSecond <= 0 {
			n.MessagesPerSecond = 2
		}
		if n.Burst <= 0 {
			n.Burst = 5
		}
		if n.NetsplitGrace <= 0 {
			n.NetsplitGrace = time.Minute
		}
		if n.RedactionNotice != "" {
			if _, err := template.New("redaction").Parse(n.RedactionNotice); err != nil {
				return nil, fmt.Errorf("%s.redaction_notice: %w", key, err)
			}
		}
		if n.MaxLines <= 0 {
			n.MaxLines = 10
		}
		if n.PowerLevels == (PowerLevelMap{}) {
			n.PowerLevels = PowerLevelMap{Op: 50, HalfOp: 25, Voice: 10}
		}
		for _, ch := range n.Channels {
			if !isChannel(ch) {
				return nil, fmt.Errorf("%s.channels: %q is not a channel name", key, ch)
			}
		}
	}
	return &cfg, nil
}

// portalsAllowed says whether users may open portals to this network's channels (the
// default when unset).
func (n *NetworkConfig) portalsAllowed() bool { return n.Portals == nil || *n.Portals }

// dmsAllowed says whether private messages are bridged on this network (the default
// when unset).
func (n *NetworkConfig) dmsAllowed() bool { return n.DMs == nil || *n.DMs }

// isChannel says whether a target names a channel (the common prefixes; the server's
// CHANTYPES is checked once connected).
func isChannel(s string) bool {
	return len(s) > 1 && strings.ContainsRune("#&+!", rune(s[0])) && !strings.ContainsAny(s, " ,\x07")
}
