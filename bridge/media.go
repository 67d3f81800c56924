package bridge

// Media links: networks that cannot carry files (IRC) get a link instead. Matrix media
// needs authentication, so the bridge serves it itself under a signed URL that names
// exactly one file and cannot be guessed.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"maunium.net/go/mautrix/id"
)

// mediaKey signs media links; derived from the as_token so it survives restarts and
// is never configured separately.
func (br *Bridge) mediaKey() []byte {
	h := sha256.Sum256([]byte("passerelle media links\x00" + br.Config.AppService.ASToken))
	return h[:]
}

func (br *Bridge) mediaSig(server, mediaID string) string {
	mac := hmac.New(sha256.New, br.mediaKey())
	mac.Write([]byte(server + "/" + mediaID))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:18])
}

// publicMediaURL returns a link to an mxc URI, or "" when no public address is set.
func (br *Bridge) publicMediaURL(uri id.ContentURI, fileName string) string {
	base := strings.TrimRight(br.Config.AppService.PublicAddress, "/")
	if base == "" || uri.IsEmpty() {
		return ""
	}
	if fileName == "" {
		fileName = "file"
	}
	return fmt.Sprintf("%s/_passerelle/media/%s/%s/%s/%s", base, url.PathEscape(uri.Homeserver), url.PathEscape(uri.FileID),
		br.mediaSig(uri.Homeserver, uri.FileID), url.PathEscape(fileName))
}

// serveMedia streams a signed media link's file from the homeserver.
func (br *Bridge) serveMedia(w http.ResponseWriter, r *http.Request) {
	server, mediaID, sig := r.PathValue("server"), r.PathValue("media"), r.PathValue("sig")
	want := br.mediaSig(server, mediaID)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		writeMatrixError(w, http.StatusNotFound, "M_NOT_FOUND", "No such file")
		return
	}
	resp, err := br.AS.BotClient().Download(r.Context(), id.ContentURI{Homeserver: server, FileID: mediaID})
	if err != nil {
		br.Log.Debug().Err(err).Msg("Fetching media for a link failed")
		writeMatrixError(w, http.StatusBadGateway, "M_UNKNOWN", "The file could not be fetched")
		return
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	if cl := resp.Header.Get("Content-Length"); cl != "" {
		w.Header().Set("Content-Length", cl)
	}
	// Served files are user content: never let a browser run them as a page of ours.
	w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Disposition", fmt.Sprintf("inline; filename=%q", r.PathValue("name")))
	_, _ = io.Copy(w, resp.Body)
}
