//go:build passerelle_loopback

package main

import (
	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/connectors/loopback"
	"github.com/passerelle/passerelle/connectors/whatsapp/fakewa"
)

// addTestNetworks adds the loopback network (the reference connector) and points the WhatsApp connector
// at the fake WhatsApp network (built with -tags passerelle_loopback by the end-to-end
// tests and the demo, never in production builds).
func addTestNetworks(conns map[string]func() bridge.Network) {
	conns["loopback"] = func() bridge.Network { return loopback.New() }
	conns["whatsapp"] = fakewa.NewConnector
}
