package harness_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/tests/harness"
)

// pushRecord is one transaction Dendrite pushed to the probe appservice.
type pushRecord struct {
	path, auth, query string
	eventIDs          []string
	at                time.Time
}

// TestAppservicePush checks what the bridge relies on from Dendrite: registrations
// passed to StartDendrite are loaded, transactions arrive at
// /_matrix/app/v1/transactions/{txnId} with "Authorization: Bearer <hs_token>" and no
// access_token query parameter, and a failed transaction is retried (after a 2 s
// backoff) with the same events.
func TestAppservicePush(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var mu sync.Mutex
	var pushes []pushRecord
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/transactions/") {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var txn struct {
			Events []struct {
				EventID string `json:"event_id"`
			} `json:"events"`
		}
		_ = json.Unmarshal(body, &txn)
		rec := pushRecord{path: r.URL.Path, auth: r.Header.Get("Authorization"), query: r.URL.RawQuery, at: time.Now()}
		for _, e := range txn.Events {
			rec.eventIDs = append(rec.eventIDs, e.EventID)
		}
		mu.Lock()
		pushes = append(pushes, rec)
		first := len(pushes) == 1
		mu.Unlock()
		if first {
			http.Error(w, `{"errcode":"M_UNKNOWN"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	defer srv.Close()

	dir := t.TempDir()
	regPath := filepath.Join(dir, "probe.yaml")
	reg := fmt.Sprintf(`id: probe
url: %s
as_token: probe_as_token
hs_token: probe_hs_token
sender_localpart: probebot
rate_limited: false
namespaces:
  users:
  - exclusive: true
    regex: '@probe_.*:hs\.test'
`, srv.URL)
	if err := os.WriteFile(regPath, []byte(reg), 0o600); err != nil {
		t.Fatal(err)
	}
	hs, err := harness.StartDendrite(ctx, filepath.Join(dir, "hs"), []string{regPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hs.Stop()
		if t.Failed() {
			t.Logf("dendrite log tail:\n%s", hs.LogTail(60))
		}
	})

	alice, err := hs.RegisterUser(ctx, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		Invite: []id.UserID{hs.UserID("probebot")},
	}); err != nil {
		t.Fatalf("creating room inviting the appservice bot: %v", err)
	}

	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := len(pushes)
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d pushes, want a failed one and its retry", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	first, retry := pushes[0], pushes[1]
	for _, p := range []pushRecord{first, retry} {
		if !strings.HasPrefix(p.path, "/_matrix/app/v1/transactions/") {
			t.Errorf("push path %q, want /_matrix/app/v1/transactions/{txnId}", p.path)
		}
		if p.auth != "Bearer probe_hs_token" {
			t.Errorf("Authorization %q, want Bearer probe_hs_token", p.auth)
		}
		if p.query != "" {
			t.Errorf("query %q, want none (legacy_auth off)", p.query)
		}
	}
	if len(first.eventIDs) == 0 || !strings.Contains(strings.Join(retry.eventIDs, ","), first.eventIDs[0]) {
		t.Errorf("retry events %v do not include the failed transaction's first event %v", retry.eventIDs, first.eventIDs)
	}
	t.Logf("first push %s (%d events), retry %s after %s (%d events)",
		first.path, len(first.eventIDs), retry.path, retry.at.Sub(first.at).Round(100*time.Millisecond), len(retry.eventIDs))
}
