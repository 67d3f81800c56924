package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
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
	br := &Bridge{Config: testConfig()}
	br.Config.Bridge.MaxFileBytes = limit
	br.AS = appservice.Create()
	br.AS.Registration = &appservice.Registration{AppToken: "as", SenderLocalpart: "passerelle"}
	br.AS.HomeserverDomain = "example.org"
	if err := br.AS.SetHomeserverURL(srv.URL); err != nil {
		t.Fatal(err)
	}
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
		data, err := br.downloadMedia(ctx, id.ContentURI{Homeserver: "example.org", FileID: tt.file}, tt.declared)
		var ue *userError
		switch {
		case tt.wantErr && (err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "larger than")):
			t.Errorf("%s (declared %d): got %d bytes, error %v; want a notice that it is too large", tt.file, tt.declared, len(data), err)
		case !tt.wantErr && (err != nil || len(data) != limit):
			t.Errorf("%s: got %d bytes, error %v", tt.file, len(data), err)
		case (requests > 0) != tt.fetched:
			t.Errorf("%s (declared %d): %d requests to the homeserver", tt.file, tt.declared, requests)
		}
	}
}
