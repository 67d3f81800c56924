package bridge

// Intake, last hop: a stored queue item is decoded and handed to its pipeline — Matrix
// events to tonetwork_*.go, remote events to tomatrix_*.go — and an item given up for
// good is reported to whoever sent it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// handleQueueItem handles one item, timing it for the metrics once it succeeded
// (given-up items are counted by queueItemFailed).
func (br *Bridge) handleQueueItem(ctx context.Context, item database.QueueItem) error {
	timing := &itemTiming{}
	ctx = withItemTiming(ctx, timing)
	if item.Resumed || item.Retried {
		ctx = context.WithValue(ctx, mayHaveRunKey{}, true)
	}
	err := br.dispatchQueueItem(ctx, item)
	if err == nil {
		br.metrics.observe(item, timing, nil)
	}
	return err
}

func (br *Bridge) dispatchQueueItem(ctx context.Context, item database.QueueItem) error {
	switch item.Kind {
	case kindRemote:
		return br.handleRemoteItem(ctx, item)
	case kindMatrix, kindEphemeral:
		var evt event.Event
		if err := json.Unmarshal(item.Payload, &evt); err != nil {
			return fmt.Errorf("%w: decoding Matrix event: %v", errPermanent, err)
		}
		if item.Kind == kindEphemeral {
			evt.Type.Class = event.EphemeralEventType
		} else if evt.StateKey != nil {
			evt.Type.Class = event.StateEventType
		} else {
			evt.Type.Class = event.MessageEventType
		}
		log := zerolog.Ctx(ctx).With().Stringer("room_id", evt.RoomID).Stringer("event_id", evt.ID).
			Stringer("sender", evt.Sender).Str("event_type", evt.Type.Type).Logger()
		return br.handleMatrixEvent(log.WithContext(ctx), &evt)
	default:
		return fmt.Errorf("%w: unknown queue item kind %q", errPermanent, item.Kind)
	}
}

type mayHaveRunKey struct{}

// mayHaveRun says whether the item being handled may have had effects already: it was
// resumed after a restart, or an earlier attempt failed. A Matrix event handled for the
// first time cannot have been sent before (the inbox takes each event once), so only
// then is the message map asked.
func mayHaveRun(ctx context.Context) bool {
	v, _ := ctx.Value(mayHaveRunKey{}).(bool)
	return v
}

// queueItemFailed tells the sender of a Matrix event that it was not bridged.
func (br *Bridge) queueItemFailed(ctx context.Context, item database.QueueItem, err error) {
	br.metrics.observe(item, nil, err)
	if item.Kind == kindRemote {
		zerolog.Ctx(ctx).Error().Err(err).Msg("A remote event could not be bridged and was given up")
		return
	}
	if item.Kind != kindMatrix {
		return
	}
	var evt event.Event
	if json.Unmarshal(item.Payload, &evt) != nil || br.isBridgeUser(evt.Sender) {
		return
	}
	switch evt.Type {
	case event.EventMessage, event.EventSticker, event.EventReaction, event.EventRedaction:
	case event.EventEncrypted:
		// Given up before it could be read (its key never came): its sender is told,
		// whatever it carried.
	case event.StateTopic, event.StateRoomName, event.StateMember:
		// Room changes are told only when there is something to tell (a refusal).
		var ue *userError
		if !errors.As(err, &ue) {
			return
		}
	default:
		return
	}
	br.sendStatusNotice(ctx, evt.RoomID, evt.ID, err)
}

// sendStatusNotice posts a visible "not bridged" notice replying to the event.
func (br *Bridge) sendStatusNotice(ctx context.Context, roomID id.RoomID, eventID id.EventID, cause error) {
	reason := "an internal error occurred"
	var ue *userError
	if errors.As(cause, &ue) {
		reason = ue.msg
	}
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: "⚠️ This was not bridged: " + reason}
	if eventID != "" {
		content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(eventID)
	}
	if _, err := br.sendEvent(ctx, br.AS.BotIntent(), roomID, event.EventMessage, content, "", time.Time{}); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Sending failure notice failed")
	}
}

// Queue kinds stored in event_queue.
const (
	kindMatrix    = "matrix"
	kindEphemeral = "ephemeral"
	kindRemote    = "remote"
)

func matrixQueueKey(roomID id.RoomID) string { return "matrix:" + roomID.String() }

func remoteQueueKey(k PortalKey) string { return "remote:" + k.String() }
