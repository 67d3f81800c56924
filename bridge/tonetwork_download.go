package bridge

// Fetching a Matrix file for a network that takes files: bounded in size (what the
// homeserver says and what it sends, not what the sender declared) and in time.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"maunium.net/go/mautrix/id"
)

// mediaDownloadTimeout bounds one download from the homeserver: a file whose upload
// never finishes (asynchronous uploads) must not hold the room's queue forever.
const mediaDownloadTimeout = 5 * time.Minute

var errFileTooLarge = errors.New("file too large")

// downloadMedia reads a Matrix file whole, refusing (with a notice to the sender) one
// larger than bridge.max_file_bytes before or while reading it.
func (br *Bridge) downloadMedia(ctx context.Context, uri id.ContentURI, declared int) ([]byte, error) {
	limit := br.Config.Bridge.MaxFileBytes
	tooLarge := func() error {
		return userErrorf("the file is larger than this bridge takes (%s)", formatBytes(limit))
	}
	if int64(declared) > limit {
		return nil, tooLarge()
	}
	ctx, cancel := context.WithTimeout(ctx, mediaDownloadTimeout)
	defer cancel()
	resp, err := br.AS.BotClient().Download(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("downloading media: %w", err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > limit {
		return nil, tooLarge()
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("downloading media: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, tooLarge()
	}
	return data, nil
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
