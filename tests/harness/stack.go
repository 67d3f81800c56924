package harness

import (
	"context"
	"fmt"
	"path/filepath"

	"maunium.net/go/mautrix/appservice"

	"github.com/passerelle/passerelle/bridge/config"
)

// Stack is a running homeserver that knows the bridge's appservice registration and a
// double-puppet registration, ready for bridge configs written with WriteConfig.
type Stack struct {
	HS      *Homeserver
	Bin     string
	Dir     string
	Reg     *appservice.Registration
	RegPath string
	// DoublePuppetToken is the as_token of the double-puppet registration.
	DoublePuppetToken string
}

// StartStack generates the bridge's registration from params (whose homeserver address
// may be a placeholder: the registration does not depend on it), writes a double-puppet
// registration and starts Dendrite in dir/dendrite knowing both. The caller stops
// HS.
func StartStack(ctx context.Context, dir, bin string, params BridgeConfigParams) (*Stack, error) {
	s := &Stack{Bin: bin, Dir: dir, RegPath: filepath.Join(dir, "registration.yaml")}
	seed := filepath.Join(dir, "seed-config.yaml")
	if params.HomeserverURL == "" {
		params.HomeserverURL = "http://127.0.0.1:1"
	}
	if params.HomeserverDomain == "" {
		params.HomeserverDomain = DefaultDomain
	}
	if err := WriteBridgeConfig(seed, params); err != nil {
		return nil, err
	}
	if err := GenerateRegistration(ctx, bin, seed, s.RegPath); err != nil {
		return nil, err
	}
	reg, err := appservice.LoadRegistration(s.RegPath)
	if err != nil {
		return nil, fmt.Errorf("loading generated registration: %w", err)
	}
	s.Reg = reg
	dpPath := filepath.Join(dir, "doublepuppet.yaml")
	if s.DoublePuppetToken, err = WriteDoublePuppetRegistration(dpPath, params.HomeserverDomain); err != nil {
		return nil, err
	}
	if s.HS, err = StartDendrite(ctx, filepath.Join(dir, "dendrite"), []string{s.RegPath, dpPath}); err != nil {
		return nil, err
	}
	return s, nil
}

// WriteConfig writes a bridge config for this stack: params pointed at the running
// homeserver (unless params.HomeserverURL names another way to it, a proxy say), with
// double puppeting and the registration's tokens. Its appservice
// side (port, connectors' namespaces) must match the params StartStack was given.
func (s *Stack) WriteConfig(path string, params BridgeConfigParams) error {
	// A test may put a proxy between the bridge and the homeserver.
	if params.HomeserverURL == "" {
		params.HomeserverURL = s.HS.URL
	}
	params.HomeserverDomain = s.HS.Domain
	if params.DoublePuppetASToken == "" {
		params.DoublePuppetASToken = s.DoublePuppetToken
	}
	if err := WriteBridgeConfig(path, params); err != nil {
		return err
	}
	return config.SetTokens(path, s.Reg.AppToken, s.Reg.ServerToken)
}
