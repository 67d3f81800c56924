package fakewa

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/whatsapp"
)

// Connector is the real WhatsApp connector with its client pointed at a fake
// network, named in its config block as fake_network: host:port.
type Connector struct {
	*whatsapp.Connector

	mu   sync.Mutex
	addr string
}

// NewConnector returns the test build's "whatsapp" connector.
func NewConnector() bridge.Network {
	c := &Connector{}
	c.Connector = whatsapp.New(whatsapp.WithClientFactory(NewFactory(func() string {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.addr
	})))
	return c
}

// Init reads fake_network, then initialises the real connector.
func (c *Connector) Init(ctx context.Context, host bridge.Host, node *yaml.Node) error {
	var cfg struct {
		FakeNetwork string `yaml:"fake_network"`
	}
	if node != nil && node.Kind != 0 {
		if err := node.Decode(&cfg); err != nil {
			return fmt.Errorf("connectors.whatsapp: %w", err)
		}
	}
	if cfg.FakeNetwork == "" {
		return errors.New("connectors.whatsapp.fake_network: missing (this is a test build; its WhatsApp connector only reaches a fake network)")
	}
	c.mu.Lock()
	c.addr = cfg.FakeNetwork
	c.mu.Unlock()
	return c.Connector.Init(ctx, host, node)
}
