//go:build tools

// Package tools pins the test-only programs the end-to-end harness builds (a real
// Dendrite homeserver), kept in their own module so the product's go.mod stays clean.
package tools

import (
	_ "github.com/element-hq/dendrite/cmd/create-account"
	_ "github.com/element-hq/dendrite/cmd/dendrite"
	_ "github.com/element-hq/dendrite/cmd/generate-keys"
)
