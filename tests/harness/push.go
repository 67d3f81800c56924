package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"maunium.net/go/mautrix/id"
)

// PushTransaction sends a transaction body to a bridge as a homeserver does. Tests use
// it for what Dendrite v0.15.2 never pushes to appservices: redactions
// (element-hq/dendrite#3445) and ephemeral events.
func PushTransaction(ctx context.Context, port int, hsToken, txnID string, txn map[string]any) error {
	body, err := json.Marshal(txn)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut,
		fmt.Sprintf("http://127.0.0.1:%d/_matrix/app/v1/transactions/%s", port, url.PathEscape(txnID)), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+hsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("pushing transaction: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pushing transaction: %s", resp.Status)
	}
	return nil
}

// RedactionEvent is the m.room.redaction event a homeserver would push for a redaction
// made through the client API.
func RedactionEvent(sender id.UserID, roomID id.RoomID, redactionID, target id.EventID) map[string]any {
	return map[string]any{"type": "m.room.redaction", "room_id": roomID, "event_id": redactionID, "sender": sender,
		"redacts": target, "content": map[string]any{"redacts": target}, "origin_server_ts": time.Now().UnixMilli()}
}
