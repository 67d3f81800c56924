package whatsapp

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	bridgeconfig "github.com/passerelle/passerelle/bridge/config"
)

// Config is the connector's block in the bridge config (connectors.whatsapp).
type Config struct {
	// HistoryCount is how many of each chat's most recent messages the history sync
	// sent at login bridges into the new portal; 0 bridges none.
	HistoryCount *int `yaml:"history_count"`
	// BridgeStatusBroadcast bridges the status@broadcast chat (people's stories),
	// which most users do not want as a room.
	BridgeStatusBroadcast bool `yaml:"bridge_status_broadcast"`
	// ContactNames names contacts' ghosts from the user's own address book. Ghosts are
	// shared by every login on the bridge, so this is for single-user bridges: off,
	// ghosts take the name each contact chose for themselves.
	ContactNames bool `yaml:"contact_names"`
	// MaxMediaBytes caps files bridged in either direction; larger ones become a
	// notice saying so. Default 64 MiB (WhatsApp's own limit for most media).
	MaxMediaBytes int `yaml:"max_media_bytes"`
	// SenderRetention is how long the sender of each bridged message is kept, which
	// removing a reaction, replying and marking a group chat read need: "30d", "720h".
	// Default 30 days, the core's default bridge.retention; keep the two alike, as a
	// sender is of no use once the core has forgotten its message.
	SenderRetention bridgeconfig.Duration `yaml:"sender_retention"`
}

const (
	defaultHistoryCount    = 50
	defaultMaxMediaBytes   = 64 << 20
	defaultSenderRetention = 30 * 24 * time.Hour
)

// parseConfig decodes connectors.whatsapp, filling in defaults.
func parseConfig(node *yaml.Node) (*Config, error) {
	var cfg Config
	if node != nil && node.Kind != 0 {
		if err := node.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("connectors.whatsapp: %w", err)
		}
	}
	if cfg.HistoryCount == nil {
		n := defaultHistoryCount
		cfg.HistoryCount = &n
	} else if *cfg.HistoryCount < 0 {
		return nil, fmt.Errorf("connectors.whatsapp.history_count: must be 0 or more, got %d", *cfg.HistoryCount)
	}
	if cfg.MaxMediaBytes == 0 {
		cfg.MaxMediaBytes = defaultMaxMediaBytes
	} else if cfg.MaxMediaBytes < 0 {
		return nil, fmt.Errorf("connectors.whatsapp.max_media_bytes: must be positive, got %d", cfg.MaxMediaBytes)
	}
	if cfg.SenderRetention == 0 {
		cfg.SenderRetention = bridgeconfig.Duration(defaultSenderRetention)
	} else if cfg.SenderRetention < 0 {
		return nil, fmt.Errorf("connectors.whatsapp.sender_retention: must be positive, got %s", cfg.SenderRetention)
	}
	return &cfg, nil
}
