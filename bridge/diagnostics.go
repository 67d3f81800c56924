package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// diagnostics is the operator's listener (metrics.listen): never the appservice
// listener, which may face the internet once public_address is set.
type diagnostics struct {
	server *http.Server
	ln     net.Listener
}

// startDiagnostics opens metrics.listen when configured. The profiler is served only
// when metrics.pprof says so, since profiles show memory contents.
func (br *Bridge) startDiagnostics(ctx context.Context) error {
	cfg := br.Config.Metrics
	if cfg.Listen == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", br.metrics.handler())
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		// Statements run so far, per statement: round trips per event are read here.
		mux.HandleFunc("/debug/queries", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = br.DB.Stats.WriteTo(w)
		})
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on metrics.listen %s: %w", cfg.Listen, err)
	}
	// A CPU profile or trace runs for as long as it was asked (?seconds=N), so only
	// the header has a deadline.
	d := &diagnostics{ln: ln, server: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}}
	br.diag = d
	br.bgWG.Add(1)
	go func() {
		defer br.bgWG.Done()
		if err := d.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			br.Log.Error().Err(err).Msg("Diagnostics listener stopped")
		}
	}()
	br.Log.Info().Str("listen", ln.Addr().String()).Bool("pprof", cfg.Pprof).Msg("Diagnostics listener open")
	return nil
}

func (br *Bridge) stopDiagnostics(ctx context.Context) {
	if br.diag != nil {
		_ = br.diag.server.Shutdown(ctx)
	}
}
