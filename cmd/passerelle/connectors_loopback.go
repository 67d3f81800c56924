//go:build passerelle_loopback

package main

import (
	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/loopback"
	"github.com/passerelle/passerelle/connectors/whatsapp/fakewa"
)

// addTestConnectors adds the loopback test network and points the WhatsApp connector
// at the fake WhatsApp network (built with -tags passerelle_loopback by the end-to-end
// tests and the demo, never in production builds).
func addTestConnectors(conns map[string]func() bridge.Connector) {
	conns["loopback"] = func() bridge.Connector { return loopback.New() }
	conns["whatsapp"] = fakewa.NewConnector
}
