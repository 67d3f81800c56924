//go:build !passerelle_loopback

package main

import "github.com/passerelle/passerelle/bridge"

// addTestNetworks adds nothing to production builds.
func addTestNetworks(map[string]func() bridge.Network) {}
