package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/passerelle/passerelle/bridge/database"
)

func TestSpoolEventKeepsBytesOutOfThePayload(t *testing.T) {
	s := &mediaSpool{dir: filepath.Join(t.TempDir(), "spool")}
	data := bytes.Repeat([]byte("picture"), 1000)
	evt := &RemoteEvent{Type: RemoteMessage, Content: &MessageContent{MsgType: "m.image", Body: "cat.png",
		Media: &Media{FileName: "cat.png", MimeType: "image/png", Data: data}},
		Sender: Sender{RemoteID: "bob", Avatar: &Media{MimeType: "image/jpeg", Data: []byte("face")}}}
	stored, names, err := s.spoolEvent(evt)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 {
		t.Fatalf("spooled %d files, want 2", len(names))
	}
	if evt.Content.Media.Data == nil || evt.Content.Media.Spool != "" {
		t.Error("the connector's event was changed")
	}
	payload, _ := json.Marshal(stored)
	if bytes.Contains(payload, []byte("cGljdHVyZ")) || bytes.Contains(payload, []byte(`"data"`)) {
		t.Errorf("file bytes are in the queued payload: %s", payload)
	}
	if got := spoolNamesIn(payload); len(got) != 2 || got[0] != names[0] {
		t.Errorf("names read back from the payload = %v, want %v", got, names)
	}
	body, err := s.body(stored.Content.Media)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(body.r)
	body.Close()
	if !bytes.Equal(got, data) || body.size != int64(len(data)) || stored.Content.Media.Size != len(data) {
		t.Errorf("spooled file holds %d bytes (size %d), want %d", len(got), body.size, len(data))
	}
	log := zerolog.Nop()
	s.remove(&log, names)
	if entries, _ := os.ReadDir(s.dir); len(entries) != 0 {
		t.Errorf("files left after removal: %d", len(entries))
	}
	if _, err = s.body(stored.Content.Media); !errors.Is(err, errSpoolFileLost) {
		t.Errorf("opening a removed file: %v, want errSpoolFileLost", err)
	}
}

func TestMediaFileRefusesToGrowPastItsLimit(t *testing.T) {
	s := &mediaSpool{dir: t.TempDir()}
	f, err := s.create(10)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Discard()
	if _, err = f.Write([]byte("12345678")); err != nil {
		t.Fatal(err)
	}
	if _, err = f.Write([]byte("abc")); !errors.Is(err, ErrMediaTooLarge) {
		t.Errorf("Write past the limit: %v", err)
	}
	if _, err = f.WriteAt([]byte("xyz"), 8); !errors.Is(err, ErrMediaTooLarge) {
		t.Errorf("WriteAt past the limit: %v", err)
	}
	if err = f.Truncate(11); !errors.Is(err, ErrMediaTooLarge) {
		t.Errorf("Truncate past the limit: %v", err)
	}
	// io.Copy prefers the destination's ReadFrom: it must not bypass the limit.
	if _, err = f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err = io.Copy(f, strings.NewReader(strings.Repeat("y", 100))); !errors.Is(err, ErrMediaTooLarge) {
		t.Errorf("io.Copy past the limit: %v", err)
	}
	if st, _ := f.Stat(); st.Size() > 10 {
		t.Errorf("file grew to %d bytes", st.Size())
	}
}

func TestSpoolNamesStayInTheSpool(t *testing.T) {
	s := &mediaSpool{dir: t.TempDir()}
	for _, name := range []string{"../passerelle.db", "/etc/passwd", "a/b.media", `..\x.media`, "x.db", ""} {
		if _, err := s.path(name); err == nil {
			t.Errorf("path(%q) accepted", name)
		}
		if _, err := s.body(&Media{Spool: name}); name != "" && err == nil {
			t.Errorf("body(%q) opened", name)
		}
	}
}

func TestSpoolSweepKeepsQueuedFiles(t *testing.T) {
	s := &mediaSpool{dir: t.TempDir()}
	keep, err := s.write([]byte("queued"))
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := s.write([]byte("orphan"))
	if err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(s.dir, "notes.txt")
	if err = os.WriteFile(foreign, []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(&RemoteEvent{Type: RemoteMessage, Content: &MessageContent{Media: &Media{Spool: keep}}})
	pending := func(context.Context) ([]database.QueueItem, error) {
		return []database.QueueItem{{Kind: kindRemote, Payload: payload}}, nil
	}
	// Files newer than the cut-off may still be on their way into the queue.
	if n, err := s.sweep(context.Background(), time.Now().Add(-time.Hour), pending); err != nil || n != 0 {
		t.Fatalf("sweep of new files removed %d (%v), want 0", n, err)
	}
	n, err := s.sweep(context.Background(), time.Now().Add(time.Second), pending)
	if err != nil || n != 1 {
		t.Fatalf("sweep removed %d (%v), want 1", n, err)
	}
	for name, want := range map[string]bool{keep: true, orphan: false, "notes.txt": true} {
		if _, err := os.Stat(filepath.Join(s.dir, name)); (err == nil) != want {
			t.Errorf("%s present = %v, want %v", name, err == nil, want)
		}
	}
}
