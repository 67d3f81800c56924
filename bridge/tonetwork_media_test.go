package bridge

import (
	"bytes"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/config"
)

// TestEncryptedMediaLink: a link to an encrypted attachment carries its key, and the
// bridge serves the file decrypted; a damaged link serves nothing.
func TestEncryptedMediaLink(t *testing.T) {
	br := &Bridge{Config: testConfig()}
	br.Config.AppService.PublicAddress = "https://bridge.example.org"
	br.Config.AppService.ASToken = "as"
	br.Config.Bridge.Retention = config.Duration(24 * 3600 * 1e9)
	br.spool = &mediaSpool{dir: t.TempDir()}
	plain := []byte("a private letter")
	file := attachment.NewEncryptedFile()
	cipher := file.Encrypt(plain)
	link := br.publicMediaURL(id.ContentURI{Homeserver: "example.org", FileID: "abc"}, "letter.txt",
		&event.EncryptedFileInfo{EncryptedFile: *file})
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(link, "https://bridge.example.org/_passerelle/media/example.org/abc/") {
		t.Fatalf("link %q (%v)", link, err)
	}
	w := httptest.NewRecorder()
	if !br.serveDecrypted(w, bytes.NewReader(cipher), u.Query()) || !bytes.Equal(w.Body.Bytes(), plain) {
		t.Fatalf("served %q, want the letter", w.Body.Bytes())
	}
	q := u.Query()
	q.Set("h", strings.Repeat("A", len(q.Get("h"))))
	w = httptest.NewRecorder()
	if br.serveDecrypted(w, bytes.NewReader(cipher), q) || w.Code != 404 || bytes.Contains(w.Body.Bytes(), plain) {
		t.Fatalf("a damaged link served %d %q", w.Code, w.Body.Bytes())
	}
	assertSpoolEmpty(t, br.spool)
}
