//go:build !passerelle_loopback

package main

import "github.com/passerelle/passerelle/bridge"

// addTestConnectors adds nothing to production builds.
func addTestConnectors(map[string]func() bridge.Connector) {}
