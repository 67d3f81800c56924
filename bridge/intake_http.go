package bridge

// The inbox is the bridge's side of the appservice API: transactions are authenticated,
// deduplicated by ID across restarts and stored in the event queue before the homeserver
// gets its 200, so a crash never loses an acknowledged event.

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/database"
)

func (br *Bridge) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /_matrix/app/v1/transactions/{txnID}", br.putTransaction)
	mux.HandleFunc("PUT /transactions/{txnID}", br.putTransaction)
	mux.HandleFunc("GET /_matrix/app/v1/users/{userID}", br.getUser)
	mux.HandleFunc("GET /users/{userID}", br.getUser)
	mux.HandleFunc("GET /_matrix/app/v1/rooms/{alias}", br.getRoomAlias)
	mux.HandleFunc("GET /rooms/{alias}", br.getRoomAlias)
	mux.HandleFunc("POST /_matrix/app/v1/ping", br.postPing)
	mux.HandleFunc("GET /_passerelle/live", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	})
	mux.HandleFunc("GET /_passerelle/ready", br.getReady)
	mux.HandleFunc("GET /_passerelle/media/{server}/{media}/{sig}/{name}", br.serveMedia)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeMatrixError(w, http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeMatrixError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"errcode": code, "error": msg})
}

// authorized checks the homeserver's token in constant time. The Authorization header
// is the spec's way; the access_token query parameter is what older homeservers send.
func (br *Bridge) authorized(w http.ResponseWriter, r *http.Request) bool {
	token := ""
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		token = strings.TrimPrefix(auth, "Bearer ")
	} else {
		token = r.URL.Query().Get("access_token")
	}
	if token == "" {
		writeMatrixError(w, http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing access token")
		return false
	}
	want := br.Config.AppService.HSToken
	if subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
		writeMatrixError(w, http.StatusForbidden, "M_FORBIDDEN", "Invalid access token")
		return false
	}
	return true
}

func (br *Bridge) getReady(w http.ResponseWriter, r *http.Request) {
	select {
	case <-br.ready:
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	default:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ok": false})
	}
}

func (br *Bridge) postPing(w http.ResponseWriter, r *http.Request) {
	if !br.authorized(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// rawTransaction is a transaction whose events are decoded one by one, so that one
// event with a wrongly typed field is skipped instead of failing the transaction: the
// homeserver would retry a refused transaction forever, and everything behind it would
// wait.
type rawTransaction struct {
	Events                 []json.RawMessage `json:"events"`
	EphemeralEvents        []json.RawMessage `json:"ephemeral"`
	MSC2409EphemeralEvents []json.RawMessage `json:"de.sorunome.msc2409.ephemeral"`
}

// decodeEvent decodes one event of a transaction. A malformed one is logged by its
// position and type only (never its content) and skipped.
func decodeEvent(log zerolog.Logger, raw json.RawMessage, what string, index int) (*event.Event, bool) {
	var evt event.Event
	if err := json.Unmarshal(raw, &evt); err != nil {
		var head struct {
			Type    any `json:"type"`
			EventID any `json:"event_id"`
		}
		_ = json.Unmarshal(raw, &head)
		log.Warn().Err(err).Str("what", what).Int("index", index).
			Interface("type", head.Type).Interface("event_id", head.EventID).
			Msg("Skipping a malformed event of the transaction")
		return nil, false
	}
	return &evt, true
}

func (br *Bridge) putTransaction(w http.ResponseWriter, r *http.Request) {
	if !br.authorized(w, r) {
		return
	}
	arrived := time.Now()
	txnID := r.PathValue("txnID")
	log := br.Log.With().Str("txn_id", txnID).Logger()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, br.Config.AppService.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeMatrixError(w, http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "Transaction body too large")
		} else {
			writeMatrixError(w, http.StatusBadRequest, "M_BAD_JSON", "Failed to read body")
		}
		return
	}
	txn, err := br.decodeTransaction(log, txnID, body)
	if err != nil {
		log.Warn().Err(err).Msg("Malformed transaction body")
		writeMatrixError(w, http.StatusBadRequest, "M_NOT_JSON", "Malformed transaction body")
		return
	}
	// Only Matrix's own events count: network events have their own budget per chat
	// (QueueRemoteEvent), so a flood from a network never stalls Matrix's side.
	if n := br.queue.LenKind(kindMatrix, kindEphemeral); n >= br.Config.Bridge.MaxQueue {
		// Overload: refuse so the homeserver retries later. Never drop.
		log.Warn().Int("queued", n).Msg("Event queue full, asking homeserver to retry")
		writeMatrixError(w, http.StatusServiceUnavailable, "M_LIMIT_EXCEEDED", "Bridge is busy, retry later")
		return
	}
	// Past the room's own budget what its members say is dropped and told instead.
	items := br.roomOverflow.admit(log, txn.items, txn.rooms, txn.droppable)
	added, err := br.DB.AcceptTransaction(r.Context(), items)
	if err != nil {
		log.Error().Err(err).Msg("Storing transaction failed")
		writeMatrixError(w, http.StatusInternalServerError, "M_UNKNOWN", "Failed to store transaction")
		return
	}
	log.Debug().Strs("events", txn.eventIDs).Int("new", len(added)).Msg("Transaction stored")
	for i := range added {
		added[i].Accepted = arrived
	}
	br.queue.Push(added...)
	// Dendrite counts only 200 as success.
	writeJSON(w, http.StatusOK, struct{}{})
}

// ownEcho says whether an event is the homeserver showing the bridge what it sent
// itself (a ghost's, the bot's or a double puppet's message, reaction or redaction):
// handling it would do nothing but drop it, so it is not stored at all. State events
// are always stored, whoever sent them: the state store learns memberships and room
// settings from them in order.
func (br *Bridge) ownEcho(evt *event.Event) bool {
	return evt.StateKey == nil && br.loops.ShouldIgnore(evt, br.isBridgeUser)
}

// decodedTxn is a transaction's queue items, with each item's room and whether it may
// be dropped when its room stays behind, and a summary of its events (type and ID) for
// the debug log.
type decodedTxn struct {
	items     []database.TxnItem
	rooms     []id.RoomID
	droppable []bool
	eventIDs  []string
}

func (d *decodedTxn) add(it database.TxnItem, evt *event.Event) {
	d.items = append(d.items, it)
	d.rooms = append(d.rooms, evt.RoomID)
	d.droppable = append(d.droppable, matrixDroppable(evt))
}

// decodeTransaction turns a transaction body into the queue items to store.
func (br *Bridge) decodeTransaction(log zerolog.Logger, txnID string, body []byte) (*decodedTxn, error) {
	var txn rawTransaction
	if err := json.Unmarshal(body, &txn); err != nil {
		return nil, fmt.Errorf("decoding transaction: %w", err)
	}
	d := &decodedTxn{items: make([]database.TxnItem, 0, len(txn.Events))}
	summarize := zerolog.GlobalLevel() <= zerolog.DebugLevel && log.GetLevel() <= zerolog.DebugLevel
	for i, raw := range txn.Events {
		evt, ok := decodeEvent(log, raw, "event", i)
		if !ok || evt.ID == "" {
			continue
		}
		if summarize {
			d.eventIDs = append(d.eventIDs, evt.Type.Type+" "+evt.ID.String())
		}
		if br.ownEcho(evt) {
			continue
		}
		if it, ok := queueItemFor(evt, raw, kindMatrix, "event:"+evt.ID.String()); ok {
			d.add(it, evt)
		}
	}
	eph := txn.EphemeralEvents
	if eph == nil {
		eph = txn.MSC2409EphemeralEvents
	}
	for i, raw := range eph {
		evt, ok := decodeEvent(log, raw, "ephemeral event", i)
		if !ok {
			continue
		}
		if it, ok := queueItemFor(evt, raw, kindEphemeral, fmt.Sprintf("txn:%s:%d", txnID, i)); ok {
			d.add(it, evt)
		}
	}
	return d, nil
}

// queueItemFor decides the ordering key of an event: its room. Events without a room
// (presence) are not bridged.
func queueItemFor(evt *event.Event, raw json.RawMessage, kind, dedupKey string) (database.TxnItem, bool) {
	if evt.RoomID == "" {
		return database.TxnItem{}, false
	}
	// The event is stored as the homeserver sent it: encoding it again would cost as
	// much as decoding did. Text that is not valid UTF-8 is the exception, since the
	// payload column is text on PostgreSQL; encoding the decoded event replaces it.
	payload := []byte(raw)
	if !utf8.Valid(payload) {
		var err error
		if payload, err = json.Marshal(evt); err != nil {
			return database.TxnItem{}, false
		}
	}
	return database.TxnItem{DedupKey: dedupKey, Key: matrixQueueKey(evt.RoomID), Kind: kind, Payload: payload}, true
}

func (br *Bridge) getUser(w http.ResponseWriter, r *http.Request) {
	if !br.authorized(w, r) {
		return
	}
	userID := id.UserID(r.PathValue("userID"))
	ch, remoteID, ok := br.ghostConnector(userID)
	if !ok {
		writeMatrixError(w, http.StatusNotFound, "M_NOT_FOUND", "User not in a bridge namespace")
		return
	}
	// A lookup carries no user to charge: lookups share one budget per connector, so
	// probing random IDs cannot register accounts without end.
	lookupBudget := func(context.Context) error {
		if !br.limits.allowLookup(ch.info.Name) {
			br.Log.Warn().Str("connector", ch.info.Name).Msg("Refused a user lookup: bridge.limits.ghost_lookups reached this hour")
			return fmt.Errorf("%w: too many new users looked up", errNoSuchGhost)
		}
		return nil
	}
	if err := ch.ensureGhostFor(r.Context(), RemoteUserID(remoteID), nil, lookupBudget); err != nil {
		if errors.Is(err, errNoSuchGhost) {
			writeMatrixError(w, http.StatusNotFound, "M_NOT_FOUND", "No such remote user")
			return
		}
		br.Log.Warn().Err(err).Str("user_id", userID.String()).Msg("User query failed")
		writeMatrixError(w, http.StatusInternalServerError, "M_UNKNOWN", "Failed to create user")
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (br *Bridge) getRoomAlias(w http.ResponseWriter, r *http.Request) {
	if !br.authorized(w, r) {
		return
	}
	alias := id.RoomAlias(r.PathValue("alias"))
	roomID, err := br.portalForAlias(r.Context(), alias)
	if err != nil {
		br.Log.Warn().Err(err).Str("alias", alias.String()).Msg("Alias query failed")
		var httpErr mautrix.HTTPError
		if errors.As(err, &httpErr) {
			writeMatrixError(w, http.StatusInternalServerError, "M_UNKNOWN", "Failed to create portal")
			return
		}
		writeMatrixError(w, http.StatusNotFound, "M_NOT_FOUND", fmt.Sprintf("No such room: %v", err))
		return
	}
	if roomID == "" {
		writeMatrixError(w, http.StatusNotFound, "M_NOT_FOUND", "No such room")
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}
