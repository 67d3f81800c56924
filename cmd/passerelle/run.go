package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/appservice"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/bridge/config"
)

// runBridge starts the bridge and blocks until ctx is cancelled.
func runBridge(ctx context.Context, cfg *config.Config, reg *appservice.Registration) error {
	// Everything the bridge writes (the SQLite file, connector session stores) holds
	// sessions or secrets: never readable by others.
	syscall.Umask(0o077)
	log, err := newLogger(cfg.Logging)
	if err != nil {
		return err
	}
	ctx = log.WithContext(ctx)
	networks, plugins, err := enabledConnectors(cfg)
	if err != nil {
		return err
	}
	br, err := bridge.New(ctx, cfg, reg, networks, plugins, log)
	if err != nil {
		return err
	}
	if err = br.Start(ctx); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		br.Stop(stopCtx)
		cancel()
		return err
	}
	<-ctx.Done()
	log.Info().Msg("Shutting down")
	stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	br.Stop(stopCtx)
	return nil
}

// enabledConnectors instantiates the compiled-in networks and plugins the config
// enables.
func enabledConnectors(cfg *config.Config) ([]bridge.Network, []bridge.Plugin, error) {
	names, err := cfg.EnabledConnectors()
	if err != nil {
		return nil, nil, err
	}
	cat := available()
	var networks []bridge.Network
	var plugins []bridge.Plugin
	for _, name := range names {
		if factory, ok := cat.networks[name]; ok {
			networks = append(networks, factory())
		} else if factory, ok := cat.plugins[name]; ok {
			plugins = append(plugins, factory())
		} else {
			return nil, nil, fmt.Errorf("connectors.%s: no such connector in this build", name)
		}
	}
	return networks, plugins, nil
}

func newLogger(cfg config.LoggingConfig) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		return zerolog.Nop(), fmt.Errorf("logging.level: %w", err)
	}
	var out io.Writer = os.Stderr
	if cfg.Format != "json" {
		out = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339}
	}
	log := zerolog.New(bodyFilter{w: out})
	return log.Level(level).With().Timestamp().Logger(), nil
}
