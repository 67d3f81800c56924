package bridge

// Fetching a Matrix file for a network that takes files: bounded in size (what the
// homeserver says and what it sends, not what the sender declared) and in time, and
// written to disk as it arrives rather than held in memory.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// downloadMedia fetches a Matrix file into a spool file of the bridge's own, decrypting
// an encrypted attachment (enc) on the way, and refuses (with a notice to the sender) one
// larger than bridge.max_file_bytes before or while reading it, or one not read whole
// within bridge.file_timeout (an upload that never finishes). An attachment whose hash
// does not match is refused once read: nothing of it reaches the network. The file is
// returned at its start, with its size; the caller discards it.
func (br *Bridge) downloadMedia(ctx context.Context, uri id.ContentURI, declared int, enc *event.EncryptedFileInfo) (*MediaFile, int64, error) {
	limit := br.Config.Bridge.MaxFileBytes
	tooLarge := func() error {
		return userErrorf("the file is larger than this bridge takes (%s)", formatBytes(limit))
	}
	if int64(declared) > limit {
		return nil, 0, tooLarge()
	}
	if enc != nil {
		if err := enc.PrepareForDecryption(); err != nil {
			return nil, 0, userErrorf("the encrypted file could not be opened (%v)", err)
		}
	}
	timeout := time.Duration(br.Config.Bridge.FileTimeout)
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The bound is the file's fault only when it, not the caller, ended the download.
	timedOut := func(err error) error {
		if ctx.Err() == nil && dctx.Err() != nil {
			return userErrorf("the file could not be fetched from the homeserver within %s", timeout)
		}
		return fmt.Errorf("downloading media: %w", err)
	}
	resp, err := br.AS.BotClient().Download(dctx, uri)
	if err != nil {
		return nil, 0, timedOut(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > limit {
		return nil, 0, tooLarge()
	}
	f, err := br.spool.create(limit)
	if err != nil {
		return nil, 0, fmt.Errorf("downloading media: %w", err)
	}
	src := io.Reader(resp.Body)
	var dec io.ReadCloser
	if enc != nil {
		dec = enc.DecryptStream(resp.Body)
		src = dec
	}
	size, err := io.Copy(f, src)
	switch {
	case errors.Is(err, ErrMediaTooLarge):
		err = tooLarge()
	case err != nil:
		err = timedOut(err)
	case dec != nil:
		// Closing the decrypting reader checks the hash of everything read.
		if cerr := dec.Close(); cerr != nil {
			err = userErrorf("the encrypted file could not be opened (%v)", cerr)
		}
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Discard()
		return nil, 0, err
	}
	return f, size, nil
}

// discardMedia removes the file a Matrix message's content was downloaded into, once the
// network has it (or will not).
func discardMedia(mc *MessageContent) {
	if mc == nil || mc.Media == nil {
		return
	}
	if f, ok := mc.Media.Reader.(*MediaFile); ok {
		f.Discard()
	}
}

// formatBytes writes a size for people: 50 MiB, 512 KiB, 900 bytes.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
