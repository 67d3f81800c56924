package main

import (
	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc"
	"github.com/passerelle/passerelle/connectors/relaybot"
	"github.com/passerelle/passerelle/connectors/whatsapp"
)

// catalogue is the plugin point: every network and plugin compiled into this binary, by
// config name. Test-only networks add themselves in files behind build tags.
type catalogue struct {
	networks map[string]func() bridge.Network
	plugins  map[string]func() bridge.Plugin
}

func available() catalogue {
	c := catalogue{
		networks: map[string]func() bridge.Network{
			"irc":      func() bridge.Network { return irc.New() },
			"whatsapp": func() bridge.Network { return whatsapp.New() },
		},
		plugins: map[string]func() bridge.Plugin{
			"relaybot": func() bridge.Plugin { return relaybot.New() },
		},
	}
	addTestNetworks(c.networks)
	return c
}

// pluginNames lists the plugins: they claim no namespaces in the registration.
func (c catalogue) pluginNames() []string {
	names := make([]string, 0, len(c.plugins))
	for name := range c.plugins {
		names = append(names, name)
	}
	return names
}
