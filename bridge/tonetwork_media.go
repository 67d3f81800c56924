package bridge

// Media links: networks that cannot carry files (IRC) get a link instead. Matrix media
// needs authentication, so the bridge serves it itself under a signed URL that names
// exactly one file and cannot be guessed.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// mediaKey signs media links; derived from the as_token so it survives restarts and
// is never configured separately.
func (br *Bridge) mediaKey() []byte {
	h := sha256.Sum256([]byte("passerelle media links\x00" + br.Config.AppService.ASToken))
	return h[:]
}

// mediaSig signs a file and the link's expiry (unix seconds).
func (br *Bridge) mediaSig(server, mediaID string, expires int64) string {
	mac := hmac.New(sha256.New, br.mediaKey())
	mac.Write([]byte(server + "/" + mediaID + "/" + strconv.FormatInt(expires, 10)))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:18])
}

// publicMediaURL returns a link to an mxc URI, or "" when no public address is set. For
// an encrypted attachment the link carries its key (whoever gets the link gets the
// file, which is what posting it to the network means), so the bridge can serve it
// decrypted; the media store keeps only ciphertext.
func (br *Bridge) publicMediaURL(uri id.ContentURI, fileName string, file *event.EncryptedFileInfo) string {
	base := strings.TrimRight(br.Config.AppService.PublicAddress, "/")
	if base == "" || uri.IsEmpty() {
		return ""
	}
	if fileName == "" {
		fileName = "file"
	}
	// Links expire with the message mappings (bridge.retention): what was posted to a
	// network, often logged publicly, does not open the file forever.
	expires := time.Now().Add(time.Duration(br.Config.Bridge.Retention)).Unix()
	link := fmt.Sprintf("%s/_passerelle/media/%s/%s/%d.%s/%s", base, url.PathEscape(uri.Homeserver), url.PathEscape(uri.FileID),
		expires, br.mediaSig(uri.Homeserver, uri.FileID, expires), url.PathEscape(fileName))
	if file != nil {
		link += "?" + url.Values{"k": {file.Key.Key}, "iv": {file.InitVector}, "h": {file.Hashes.SHA256}}.Encode()
	}
	return link
}

// maxServedEncrypted bounds an encrypted file the bridge decrypts to serve a link: it
// is decrypted to disk whole, its hash checked, before anything is sent.
const maxServedEncrypted = 100 << 20

// serveDecrypted answers a link to an encrypted attachment with the file in clear. The
// plaintext goes through a spool file, never whole through memory, and is sent only
// once its hash is checked: a damaged or forged link serves nothing.
func (br *Bridge) serveDecrypted(w http.ResponseWriter, body io.Reader, q url.Values) bool {
	file := attachment.EncryptedFile{Key: attachment.JSONWebKey{Key: q.Get("k"), Algorithm: "A256CTR", KeyType: "oct",
		Extractable: true, KeyOps: []string{"encrypt", "decrypt"}}, InitVector: q.Get("iv"),
		Hashes: attachment.EncryptedFileHashes{SHA256: q.Get("h")}, Version: "v2"}
	notFound := func() bool {
		writeMatrixError(w, http.StatusNotFound, "M_NOT_FOUND", "No such file (or the link is damaged)")
		return false
	}
	if file.PrepareForDecryption() != nil {
		return notFound()
	}
	f, err := br.spool.create(maxServedEncrypted)
	if err != nil {
		br.Log.Warn().Err(err).Msg("No spool file to decrypt a linked file into")
		writeMatrixError(w, http.StatusInternalServerError, "M_UNKNOWN", "The file could not be decrypted")
		return false
	}
	defer f.Discard()
	dec := file.DecryptStream(body)
	size, err := io.Copy(f, dec)
	if err != nil || dec.Close() != nil {
		return notFound()
	}
	var head [512]byte
	n, _ := f.ReadAt(head[:], 0)
	w.Header().Set("Content-Type", http.DetectContentType(head[:n]))
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	br.mediaSafetyHeaders(w)
	if _, err = f.Seek(0, io.SeekStart); err == nil {
		_, _ = io.Copy(newDeadlineWriter(w), f)
	}
	return true
}

// mediaSafetyHeaders keeps served files from running as a page of ours.
func (br *Bridge) mediaSafetyHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
}

// serveMedia streams a signed media link's file from the homeserver.
// The appservice listener's timeouts. A transaction (up to max_body_bytes) must arrive
// within httpReadTimeout; answers other than media must leave within httpWriteTimeout.
const (
	httpHeaderTimeout = 10 * time.Second
	httpReadTimeout   = time.Minute
	httpWriteTimeout  = time.Minute
	httpIdleTimeout   = 30 * time.Second
	// mediaStallTimeout is how long a media download may make no progress (a client
	// that stopped reading); mediaMaxDuration bounds the whole download.
	mediaStallTimeout = 30 * time.Second
	mediaMaxDuration  = 30 * time.Minute
)

// deadlineWriter pushes the connection's write deadline forward before each write, so
// a download lasts as long as it progresses (up to a bound), not a fixed time.
type deadlineWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	limit time.Time
}

func newDeadlineWriter(w http.ResponseWriter) *deadlineWriter {
	return &deadlineWriter{w: w, rc: http.NewResponseController(w), limit: time.Now().Add(mediaMaxDuration)}
}

// Write writes p in chunks, each with its own deadline: one large write to a slow
// reader still counts as progress chunk by chunk.
func (d *deadlineWriter) Write(p []byte) (int, error) {
	const chunk = 32 << 10
	written := 0
	for len(p) > 0 {
		deadline := time.Now().Add(mediaStallTimeout)
		if deadline.After(d.limit) {
			deadline = d.limit
		}
		// A writer without deadlines (a test recorder) is written to without them.
		if err := d.rc.SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return written, err
		}
		n, err := d.w.Write(p[:min(chunk, len(p))])
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (br *Bridge) serveMedia(w http.ResponseWriter, r *http.Request) {
	select {
	case br.mediaSlots <- struct{}{}:
		defer func() { <-br.mediaSlots }()
	default:
		w.Header().Set("Retry-After", "10")
		writeMatrixError(w, http.StatusServiceUnavailable, "M_LIMIT_EXCEEDED", "Too many downloads at once, retry later")
		return
	}
	server, mediaID := r.PathValue("server"), r.PathValue("media")
	expText, sig, _ := strings.Cut(r.PathValue("sig"), ".")
	expires, err := strconv.ParseInt(expText, 10, 64)
	if err != nil || !hmac.Equal([]byte(sig), []byte(br.mediaSig(server, mediaID, expires))) || time.Now().Unix() > expires {
		writeMatrixError(w, http.StatusNotFound, "M_NOT_FOUND", "No such file (or the link expired)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), mediaMaxDuration)
	defer cancel()
	resp, err := br.AS.BotClient().Download(ctx, id.ContentURI{Homeserver: server, FileID: mediaID})
	if err != nil {
		br.Log.Debug().Err(err).Msg("Fetching media for a link failed")
		writeMatrixError(w, http.StatusBadGateway, "M_UNKNOWN", "The file could not be fetched")
		return
	}
	defer resp.Body.Close()
	if r.URL.Query().Get("k") != "" {
		w.Header().Set("Content-Disposition", fmt.Sprintf("inline; filename=%q", r.PathValue("name")))
		br.serveDecrypted(w, resp.Body, r.URL.Query())
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	if cl := resp.Header.Get("Content-Length"); cl != "" {
		w.Header().Set("Content-Length", cl)
	}
	// Served files are user content: never let a browser run them as a page of ours.
	br.mediaSafetyHeaders(w)
	w.Header().Set("Content-Disposition", fmt.Sprintf("inline; filename=%q", r.PathValue("name")))
	_, _ = io.Copy(newDeadlineWriter(w), resp.Body)
}
