package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"maunium.net/go/mautrix"
)

// TestHomeserverOutage: what the queue waits out (the homeserver unreachable, or a
// gateway answering for it) against what counts against an event (the homeserver
// refusing it), from real requests of the Matrix client.
func TestHomeserverOutage(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprint(w, `{"errcode":"M_FORBIDDEN","error":"no"}`)
	}))
	request := func(t *testing.T) error {
		cli, err := mautrix.NewClient(srv.URL, "@bot:example.org", "token")
		if err != nil {
			t.Fatal(err)
		}
		cli.DefaultHTTPRetries = 0
		_, err = cli.Whoami(context.Background())
		return err
	}
	for _, tt := range []struct {
		status int
		outage bool
	}{{http.StatusForbidden, false}, {http.StatusInternalServerError, false}, {http.StatusBadGateway, true},
		{http.StatusServiceUnavailable, true}, {http.StatusGatewayTimeout, true}} {
		status = tt.status
		if err := request(t); err == nil || isHomeserverOutage(err) != tt.outage {
			t.Errorf("status %d: error %v, outage %v, want %v", tt.status, err, isHomeserverOutage(err), tt.outage)
		}
	}
	srv.Close()
	if err := request(t); err == nil || !isHomeserverOutage(fmt.Errorf("sending: %w", err)) {
		t.Errorf("connection refused: %v is not an outage", err)
	}
	if isHomeserverOutage(errors.New("the IRC server refused the line")) || isHomeserverOutage(userErrorf("no")) {
		t.Error("an error not from the homeserver counted as its outage")
	}
}
