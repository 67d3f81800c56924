package main

import (
	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/irc"
	"github.com/passerelle/passerelle/connectors/relaybot"
	"github.com/passerelle/passerelle/connectors/whatsapp"
)

// availableConnectors is the plugin point: every connector compiled into this binary,
// by config name. Test-only connectors add themselves in files behind build tags.
func availableConnectors() map[string]func() bridge.Connector {
	conns := map[string]func() bridge.Connector{
		"irc":      func() bridge.Connector { return irc.New() },
		"whatsapp": func() bridge.Connector { return whatsapp.New() },
		"relaybot": func() bridge.Connector { return relaybot.New() },
	}
	addTestConnectors(conns)
	return conns
}
