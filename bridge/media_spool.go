package bridge

// The media spool: files received from a network wait on disk, not in memory or in the
// event queue, between the connector handing them over and their upload to Matrix.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/passerelle/passerelle/bridge/database"
)

// ErrMediaTooLarge is the error a MediaFile gives when a write would take it past its
// limit: a sender that declared a small file cannot fill the disk with a large one.
var ErrMediaTooLarge = errors.New("the file is larger than the bridge's limit")

// errSpoolFileLost marks a queued file whose spool file is gone (removed by hand, or
// lost with a disk): the message is bridged as a notice saying so, never retried.
var errSpoolFileLost = errors.New("the received file is no longer in the media spool")

// spoolSuffix ends every spool file's name; files in the directory without it are not
// the bridge's and are left alone.
const spoolSuffix = ".media"

// mediaSpool is the directory of received files. The queue holds only a file's name
// (Media.Spool); the file is removed once its event is finished, handled or given up.
type mediaSpool struct {
	dir string
}

// MediaFile is a file being written into the media spool by a connector (Host.
// CreateMediaFile). It offers what stream downloaders need (whatsmeow's DownloadToFile
// among them) and refuses to grow past its limit. Once written, its Name goes into
// Media.Spool and the event is queued: the bridge then owns the file. A file not queued
// is removed with Discard.
type MediaFile struct {
	// f is not embedded: every way of writing to it (WriteString, ReadFrom, …) would
	// be promoted past the limit.
	f     *os.File
	name  string
	limit int64
}

// SpoolName is what Media.Spool takes to hand this file to the bridge.
func (f *MediaFile) SpoolName() string { return f.name }

// Read implements io.Reader.
func (f *MediaFile) Read(p []byte) (int, error) { return f.f.Read(p) }

// ReadAt implements io.ReaderAt.
func (f *MediaFile) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }

// Seek implements io.Seeker.
func (f *MediaFile) Seek(offset int64, whence int) (int64, error) { return f.f.Seek(offset, whence) }

// Stat describes the file (its size so far).
func (f *MediaFile) Stat() (os.FileInfo, error) { return f.f.Stat() }

// Close closes the file; it stays in the spool.
func (f *MediaFile) Close() error { return f.f.Close() }

// Write implements io.Writer within the limit.
func (f *MediaFile) Write(p []byte) (int, error) {
	off, err := f.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if off+int64(len(p)) > f.limit {
		return 0, ErrMediaTooLarge
	}
	return f.f.Write(p)
}

// WriteAt implements io.WriterAt within the limit.
func (f *MediaFile) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.limit {
		return 0, ErrMediaTooLarge
	}
	return f.f.WriteAt(p, off)
}

// Truncate resizes the file within the limit.
func (f *MediaFile) Truncate(size int64) error {
	if size > f.limit {
		return ErrMediaTooLarge
	}
	return f.f.Truncate(size)
}

// Discard closes and removes a file that will not be queued.
func (f *MediaFile) Discard() {
	_ = f.f.Close()
	_ = os.Remove(f.f.Name())
}

// create makes a new, empty spool file.
func (s *mediaSpool) create(limit int64) (*MediaFile, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the media spool %s: %w", s.dir, err)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("naming a spool file: %w", err)
	}
	name := hex.EncodeToString(b[:]) + spoolSuffix
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating a spool file: %w", err)
	}
	return &MediaFile{f: f, name: name, limit: limit}, nil
}

// path resolves a spool name from a queued event. Only bare names the spool made are
// accepted: a queued event can never point the bridge at another file.
func (s *mediaSpool) path(name string) (string, error) {
	if !strings.HasSuffix(name, spoolSuffix) || name != filepath.Base(name) || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("%w: %q is not a spool file name", errPermanent, name)
	}
	return filepath.Join(s.dir, name), nil
}

// open opens a queued file for upload, with its size.
func (s *mediaSpool) open(name string) (*os.File, int64, error) {
	p, err := s.path(name)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, errSpoolFileLost
	} else if err != nil {
		return nil, 0, fmt.Errorf("opening spool file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("reading spool file size: %w", err)
	}
	return f, st.Size(), nil
}

// settle makes a file durable before the event naming it is stored: a crash must not
// leave a stored event pointing at a file the disk never kept.
func (s *mediaSpool) settle(name string) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("opening spool file to sync: %w", err)
	}
	err = f.Sync()
	_ = f.Close()
	if err != nil {
		return fmt.Errorf("syncing spool file: %w", err)
	}
	if d, derr := os.Open(s.dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// write stores bytes a connector handed over in memory as a new spool file.
func (s *mediaSpool) write(data []byte) (string, error) {
	f, err := s.create(int64(len(data)))
	if err != nil {
		return "", err
	}
	if _, err = f.f.Write(data); err != nil {
		f.Discard()
		return "", fmt.Errorf("writing spool file: %w", err)
	}
	if err = f.Close(); err != nil {
		_ = os.Remove(f.f.Name())
		return "", fmt.Errorf("closing spool file: %w", err)
	}
	return f.name, nil
}

// remove deletes spool files; missing ones are fine (a second completion, a sweep).
func (s *mediaSpool) remove(log *zerolog.Logger, names []string) {
	for _, name := range names {
		p, err := s.path(name)
		if err != nil {
			continue
		}
		if err = os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn().Err(err).Str("spool_file", name).Msg("Removing a spool file failed")
		}
	}
}

// sweep removes spool files older than before that no stored event names: files of
// events a crash interrupted before they were stored, or of a lost completion.
func (s *mediaSpool) sweep(ctx context.Context, before time.Time, pending func(ctx context.Context) ([]database.QueueItem, error)) (int, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("listing the media spool: %w", err)
	}
	items, err := pending(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading queued events for the spool sweep: %w", err)
	}
	used := make(map[string]struct{})
	for _, it := range items {
		for _, name := range spoolNamesIn(it.Payload) {
			used[name] = struct{}{}
		}
	}
	removed := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), spoolSuffix) {
			continue
		}
		if _, ok := used[e.Name()]; ok {
			continue
		}
		if info, err := e.Info(); err != nil || !info.ModTime().Before(before) {
			continue
		}
		if err = os.Remove(filepath.Join(s.dir, e.Name())); err == nil {
			removed++
		}
	}
	return removed, nil
}

// spoolNamesIn lists the spool files a queued remote event names.
func spoolNamesIn(payload []byte) []string {
	if !bytes.Contains(payload, []byte(`"spool"`)) {
		return nil
	}
	var evt RemoteEvent
	if json.Unmarshal(payload, &evt) != nil {
		return nil
	}
	return spoolNamesOf(&evt)
}

// spoolNamesOf lists the spool files an event names.
func spoolNamesOf(evt *RemoteEvent) []string {
	var names []string
	for _, m := range evt.media() {
		if m.Spool != "" {
			names = append(names, m.Spool)
		}
	}
	return names
}

// media lists the files an event carries: the message's, the sender's new picture and
// the chat's.
func (evt *RemoteEvent) media() []*Media {
	var out []*Media
	if evt.Content != nil && evt.Content.Media != nil {
		out = append(out, evt.Content.Media)
	}
	if evt.Sender.Avatar != nil {
		out = append(out, evt.Sender.Avatar)
	}
	if evt.ChatInfo != nil && evt.ChatInfo.Avatar != nil {
		out = append(out, evt.ChatInfo.Avatar)
	}
	return out
}

// spoolEvent moves the bytes of an event's files into the spool and returns the copy of
// the event to store, naming them instead; the connector's event is left as it was.
// Files the connector spooled itself are made durable. It returns every spool file the
// stored event names; on error, files made here are removed again.
func (s *mediaSpool) spoolEvent(evt *RemoteEvent) (*RemoteEvent, []string, error) {
	if len(evt.media()) == 0 {
		return evt, nil, nil
	}
	out := *evt
	if evt.Content != nil {
		c := *evt.Content
		out.Content = &c
	}
	if evt.ChatInfo != nil {
		ci := *evt.ChatInfo
		out.ChatInfo = &ci
	}
	// In the order media() lists them.
	var slots []**Media
	if out.Content != nil {
		slots = append(slots, &out.Content.Media)
	}
	slots = append(slots, &out.Sender.Avatar)
	if out.ChatInfo != nil {
		slots = append(slots, &out.ChatInfo.Avatar)
	}
	var names []string
	var made []string
	for _, slot := range slots {
		if *slot == nil {
			continue
		}
		m := **slot
		switch {
		case m.Spool != "":
			if err := s.settle(m.Spool); err != nil {
				s.undo(made)
				return nil, nil, err
			}
		case len(m.Data) > 0:
			name, err := s.write(m.Data)
			if err != nil {
				s.undo(made)
				return nil, nil, err
			}
			made = append(made, name)
			if err = s.settle(name); err != nil {
				s.undo(made)
				return nil, nil, err
			}
			m.Spool, m.Size, m.Data = name, len(m.Data), nil
		default:
			continue
		}
		names = append(names, m.Spool)
		*slot = &m
	}
	return &out, names, nil
}

// undo removes files spoolEvent made for an event that was not stored after all.
func (s *mediaSpool) undo(names []string) {
	for _, name := range names {
		if p, err := s.path(name); err == nil {
			_ = os.Remove(p)
		}
	}
}

// mediaBody is a file's content for upload: from the spool, or bytes held in memory
// (a login QR code, an avatar a connector fetched on demand).
type mediaBody struct {
	r    io.ReadSeeker
	size int64
	file *os.File
}

// Close releases the spool file, if any (the file itself stays until its event is
// finished).
func (b *mediaBody) Close() {
	if b.file != nil {
		_ = b.file.Close()
	}
}

// body opens a Media's content, nil when it has none.
func (s *mediaSpool) body(m *Media) (*mediaBody, error) {
	switch {
	case m == nil:
		return nil, nil
	case m.Spool != "":
		f, size, err := s.open(m.Spool)
		if err != nil {
			return nil, err
		}
		return &mediaBody{r: f, size: size, file: f}, nil
	case len(m.Data) > 0:
		return &mediaBody{r: bytes.NewReader(m.Data), size: int64(len(m.Data))}, nil
	}
	return nil, nil
}

// releaseItemMedia removes the spool files of a finished queue item.
func (br *Bridge) releaseItemMedia(item database.QueueItem) {
	if item.Kind != kindRemote {
		return
	}
	if names := spoolNamesIn(item.Payload); len(names) > 0 {
		br.spool.remove(&br.Log, names)
	}
}

// sweepSpool removes files left behind by an earlier run (see mediaSpool.sweep).
func (br *Bridge) sweepSpool(ctx context.Context, started time.Time) {
	n, err := br.spool.sweep(ctx, started, br.DB.PendingQueue)
	if err != nil {
		br.Log.Warn().Err(err).Msg("Sweeping the media spool failed")
	} else if n > 0 {
		br.Log.Info().Int("files", n).Msg("Removed spool files no queued event needs")
	}
}
