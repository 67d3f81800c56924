package bridge

// The Matrix send seam: every message-type event the bridge posts — bot replies and
// notices, ghosts' and double puppets' messages, QR codes — leaves through sendEvent,
// and every file it uploads through upload. This is where sending into a room gets
// decided in one place (encryption hooks in here).

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"
)

// sendEvent posts a message-type event into a room as intent. A non-empty txnID makes
// retries idempotent; a non-zero ts backdates the event (appservices may).
func (br *Bridge) sendEvent(ctx context.Context, intent *appservice.IntentAPI, roomID id.RoomID, evtType event.Type,
	content any, txnID string, ts time.Time) (id.EventID, error) {
	req := mautrix.ReqSendEvent{TransactionID: txnID}
	if txnID != "" && mayHaveRun(ctx) {
		// An earlier attempt may have reached the homeserver without its answer
		// reaching us (the homeserver went down mid-request). The transaction ID alone
		// does not keep it from being posted twice: a homeserver may forget transaction
		// IDs when it restarts (Dendrite does).
		if evtID, err := br.findSent(ctx, intent, roomID, txnID); err != nil {
			return "", err
		} else if evtID != "" {
			zerolog.Ctx(ctx).Debug().Str("event_id", evtID.String()).Msg("An earlier attempt was posted; not sending again")
			return evtID, nil
		}
	}
	if !ts.IsZero() {
		req.Timestamp = ts.UnixMilli()
	}
	if encrypted, err := br.AS.StateStore.IsEncrypted(ctx, roomID); err != nil {
		return "", fmt.Errorf("checking the room's encryption: %w", err)
	} else if !encrypted {
		if err = br.refuseClearRemote(intent); err != nil {
			return "", err
		}
	} else {
		// Never clear text into an encrypted room: without a device the send fails.
		if br.crypto == nil {
			return "", fmt.Errorf("%w: the room is encrypted and the bridge has no encryption", errPermanent)
		}
		enc, err := br.crypto.encrypt(ctx, roomID, evtType, content)
		if err != nil {
			return "", err
		}
		evtType, content = event.EventEncrypted, enc
	}
	sendCtx := ctx
	if txnID != "" {
		content = &event.Content{Parsed: content, Raw: map[string]any{sentMarker: txnID}}
		// A failed send is retried by the queue, which first looks for what an
		// earlier attempt posted; the HTTP client's own retries would not.
		sendCtx = mautrix.WithMaxRetries(ctx, 0)
	}
	resp, err := intent.SendMessageEvent(sendCtx, roomID, evtType, content, req)
	if err != nil {
		return "", fmt.Errorf("sending %s: %w", evtType.Type, err)
	}
	return resp.EventID, nil
}

// sentLookback is how many of a room's latest events findSent looks through.
const sentLookback = 100

// sentMarker is the content field carrying the transaction ID of an event sent with
// one, in clear beside the ciphertext of an encrypted one: the homeserver may not show
// the transaction ID itself (Dendrite does not, in /messages).
const sentMarker = "net.passerelle.txn_id"

// findSent looks for an event intent posted with txnID among the room's latest events.
func (br *Bridge) findSent(ctx context.Context, intent *appservice.IntentAPI, roomID id.RoomID, txnID string) (id.EventID, error) {
	resp, err := intent.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, sentLookback)
	if err != nil {
		return "", fmt.Errorf("looking for an earlier attempt's event: %w", err)
	}
	for _, evt := range resp.Chunk {
		if evt.Sender != intent.UserID {
			continue
		}
		if marker, _ := evt.Content.Raw[sentMarker].(string); marker == txnID || evt.Unsigned.TransactionID == txnID {
			return evt.ID, nil
		}
	}
	return "", nil
}

// refuseClearRemote refuses remote content (anything not from the bot itself) for a
// room without encryption when the config requires encryption.
func (br *Bridge) refuseClearRemote(intent *appservice.IntentAPI) error {
	if br.Config.Bridge.Encryption.Require && intent.UserID != br.BotMXID() {
		return fmt.Errorf("%w: the room is not encrypted and bridge.encryption.require is set", errPermanent)
	}
	return nil
}

// markdownNotice renders a bot text written in Markdown (`code` in help texts, links)
// as a notice with its HTML form; raw HTML in it is escaped, never passed on.
func markdownNotice(text string) *event.MessageEventContent {
	rendered := format.RenderMarkdown(text, true, false)
	// The plain body stays the text as written (Markdown is meant to read well as is);
	// the HTML form is added only when the Markdown made a difference.
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: text}
	if rendered.Format == event.FormatHTML {
		content.Format, content.FormattedBody = event.FormatHTML, rendered.FormattedBody
	}
	return content
}

// noticeAs sends a Markdown notice into a room as intent.
func (br *Bridge) noticeAs(ctx context.Context, intent *appservice.IntentAPI, roomID id.RoomID, text string) (id.EventID, error) {
	return br.sendEvent(ctx, intent, roomID, event.EventMessage, markdownNotice(text), "", time.Time{})
}

// botNotice sends a Markdown notice into a room as the bridge bot.
func (br *Bridge) botNotice(ctx context.Context, roomID id.RoomID, text string) (id.EventID, error) {
	return br.noticeAs(ctx, br.AS.BotIntent(), roomID, text)
}

// upload stores a file meant for a room on the homeserver, as intent, and puts it in
// content. Into an encrypted room the file is encrypted first (an attachment: only
// ciphertext reaches the media store, named and typed as nothing in particular) and
// referenced as content.File; otherwise it goes as it is, in content.URL. Either way it
// is streamed from r (size bytes), never held whole.
func (br *Bridge) upload(ctx context.Context, intent *appservice.IntentAPI, roomID id.RoomID, content *event.MessageEventContent,
	r io.ReadSeeker, size int64, mimeType, fileName string) error {
	encrypted, err := br.AS.StateStore.IsEncrypted(ctx, roomID)
	if err != nil {
		return fmt.Errorf("checking the room's encryption: %w", err)
	}
	if !encrypted {
		if err = br.refuseClearRemote(intent); err != nil {
			return err
		}
		resp, err := intent.UploadMedia(ctx, mautrix.ReqUploadMedia{Content: r, ContentLength: size, ContentType: mimeType, FileName: fileName})
		if err != nil {
			return fmt.Errorf("uploading %s: %w", fileName, err)
		}
		content.URL, content.File = resp.ContentURI.CUString(), nil
		return nil
	}
	if br.crypto == nil {
		return fmt.Errorf("%w: the room is encrypted and the bridge has no encryption", errPermanent)
	}
	file := attachment.NewEncryptedFile()
	// AES-CTR keeps the length; the hash is known once the stream is closed.
	stream := file.EncryptStream(r)
	resp, err := intent.UploadMedia(ctx, mautrix.ReqUploadMedia{Content: stream, ContentLength: size, ContentType: "application/octet-stream"})
	if err != nil {
		return fmt.Errorf("uploading encrypted %s: %w", fileName, err)
	}
	if err = stream.Close(); err != nil {
		return fmt.Errorf("finishing encryption of %s: %w", fileName, err)
	}
	content.URL = ""
	content.File = &event.EncryptedFileInfo{EncryptedFile: *file, URL: resp.ContentURI.CUString()}
	return nil
}

// uploadPublic stores a picture that is public by nature (a profile or room avatar,
// never room content) as it is, streamed.
func (br *Bridge) uploadPublic(ctx context.Context, m *Media) (id.ContentURI, error) {
	body, err := br.spool.body(m)
	if err != nil || body == nil {
		return id.ContentURI{}, err
	}
	defer body.Close()
	resp, err := br.AS.BotIntent().UploadMedia(ctx, mautrix.ReqUploadMedia{Content: body.r, ContentLength: body.size, ContentType: m.MimeType})
	if err != nil {
		return id.ContentURI{}, fmt.Errorf("uploading picture: %w", err)
	}
	return resp.ContentURI, nil
}
