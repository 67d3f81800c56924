package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/config"
)

// TestDownloadMediaLimit: a file over bridge.max_file_bytes is refused with a notice
// whether the sender declared its size, the homeserver announced it, or neither did (it
// is cut off while read); a file within it is read.
func TestDownloadMediaLimit(t *testing.T) {
	const limit = 1000
	files := map[string]string{"small": strings.Repeat("s", limit), "big": strings.Repeat("b", limit+1)}
	var requests int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests++
		name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		data, ok := files[strings.TrimSuffix(name, "-chunked")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if strings.HasSuffix(name, "-chunked") {
			w.Header().Set("Transfer-Encoding", "chunked") // no Content-Length: read to learn the size
			for i := 0; i < len(data); i += 100 {
				_, _ = fmt.Fprint(w, data[i:min(i+100, len(data))])
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = fmt.Fprint(w, data)
	}))
	t.Cleanup(srv.Close)
	br := downloadBridge(t, srv.URL, limit, time.Minute)
	ctx := context.Background()
	for _, tt := range []struct {
		file     string
		declared int
		wantErr  bool
		fetched  bool
	}{
		{"small", 0, false, true}, {"small-chunked", limit, false, true},
		{"big", 0, true, true}, {"big-chunked", 0, true, true}, {"small", limit + 1, true, false},
	} {
		requests = 0
		f, _, err := br.downloadMedia(ctx, id.ContentURI{Homeserver: "example.org", FileID: tt.file}, tt.declared, nil)
		var data []byte
		if f != nil {
			data, _ = io.ReadAll(f)
			f.Discard()
		}
		var ue *userError
		switch {
		case tt.wantErr && (err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "larger than")):
			t.Errorf("%s (declared %d): got %d bytes, error %v; want a notice that it is too large", tt.file, tt.declared, len(data), err)
		case !tt.wantErr && (err != nil || string(data) != files["small"]):
			t.Errorf("%s: got %d bytes, error %v", tt.file, len(data), err)
		case (requests > 0) != tt.fetched:
			t.Errorf("%s (declared %d): %d requests to the homeserver", tt.file, tt.declared, requests)
		}
	}
	assertSpoolEmpty(t, br.spool)
}

// TestDownloadEncryptedMedia: an encrypted attachment is decrypted on its way to disk;
// one whose bytes do not match its hash (a tampered or truncated file) is refused with a
// notice, and nothing of it is kept.
func TestDownloadEncryptedMedia(t *testing.T) {
	plain := []byte(strings.Repeat("a private letter. ", 5000))
	attach := attachment.NewEncryptedFile()
	cipher := attach.Encrypt(plain)
	tampered := bytes.Clone(cipher)
	tampered[len(tampered)/2] ^= 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/good"):
			_, _ = w.Write(cipher)
		case strings.HasSuffix(r.URL.Path, "/tampered"):
			_, _ = w.Write(tampered)
		case strings.HasSuffix(r.URL.Path, "/short"):
			_, _ = w.Write(cipher[:len(cipher)-1])
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	br := downloadBridge(t, srv.URL, 1<<20, time.Minute)
	ctx := context.Background()
	// As a received event carries it: from JSON, keys not yet decoded.
	attachJSON, _ := json.Marshal(attach)
	enc := func() *event.EncryptedFileInfo {
		var info event.EncryptedFileInfo
		if err := json.Unmarshal(attachJSON, &info); err != nil {
			t.Fatal(err)
		}
		return &info
	}
	f, size, err := br.downloadMedia(ctx, id.ContentURI{Homeserver: "example.org", FileID: "good"}, len(plain), enc())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Discard()
	if !bytes.Equal(got, plain) || size != int64(len(plain)) {
		t.Fatalf("decrypted %d bytes, want the %d of the letter", len(got), len(plain))
	}
	for _, name := range []string{"tampered", "short"} {
		f, _, err = br.downloadMedia(ctx, id.ContentURI{Homeserver: "example.org", FileID: name}, len(plain), enc())
		var ue *userError
		if f != nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "could not be opened") {
			t.Errorf("%s file: got a file (%v), error %v; want a notice that it could not be opened", name, f != nil, err)
		}
	}
	assertSpoolEmpty(t, br.spool)
}

// TestDownloadMediaStalled: a file the homeserver starts sending and never finishes (an
// upload that never completes) is refused with a notice once bridge.file_timeout is
// over, and nothing of it is kept; a download its caller ends is not the file's fault.
func TestDownloadMediaStalled(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write([]byte("the first bytes"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	br := downloadBridge(t, srv.URL, 1<<20, 200*time.Millisecond)
	uri := id.ContentURI{Homeserver: "example.org", FileID: "never-finished"}
	f, _, err := br.downloadMedia(context.Background(), uri, 0, nil)
	var ue *userError
	if f != nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "could not be fetched") {
		t.Fatalf("got a file (%v), error %v; want a notice that it could not be fetched", f != nil, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err = br.downloadMedia(ctx, uri, 0, nil); err == nil || errors.As(err, &ue) {
		t.Fatalf("a download its caller ended: error %v; want a failure that is not the sender's to be told", err)
	}
	assertSpoolEmpty(t, br.spool)
}

// downloadBridge is the part of a bridge that fetches Matrix files, from a homeserver
// at hsURL, within limit bytes and timeout.
func downloadBridge(t *testing.T, hsURL string, limit int64, timeout time.Duration) *Bridge {
	t.Helper()
	br := &Bridge{Config: testConfig(), spool: &mediaSpool{dir: t.TempDir()}}
	br.Config.Bridge.MaxFileBytes = limit
	br.Config.Bridge.FileTimeout = config.Duration(timeout)
	br.AS = appservice.Create()
	br.AS.Registration = &appservice.Registration{AppToken: "as", SenderLocalpart: "passerelle"}
	br.AS.HomeserverDomain = "example.org"
	if err := br.AS.SetHomeserverURL(hsURL); err != nil {
		t.Fatal(err)
	}
	return br
}

// assertSpoolEmpty fails when a download left a file behind.
func assertSpoolEmpty(t *testing.T, s *mediaSpool) {
	t.Helper()
	if left, _ := os.ReadDir(s.dir); len(left) != 0 {
		t.Fatalf("%d files left in the spool", len(left))
	}
}
