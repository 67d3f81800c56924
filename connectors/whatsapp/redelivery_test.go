package whatsapp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/util/dbutil"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

// storeHost is a bridge host over a real database whose QueueRemoteEvent fails while
// down is set, as the core's does while its database is away.
type storeHost struct {
	bridge.Host
	db   *dbutil.Database
	log  zerolog.Logger
	mu   sync.Mutex
	down bool
	got  []*bridge.RemoteEvent
}

func (h *storeHost) Database() *dbutil.Database { return h.db }
func (h *storeHost) Log() *zerolog.Logger       { return &h.log }
func (h *storeHost) GhostMXID(remote bridge.RemoteUserID) id.UserID {
	return id.NewUserID("whatsapp_"+id.EncodeUserLocalpart(string(remote)), "example.org")
}
func (h *storeHost) QueueRemoteEvent(_ context.Context, evt *bridge.RemoteEvent) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		return errors.New("database unreachable")
	}
	h.got = append(h.got, evt)
	return nil
}

// messages are the messages stored so far (the push name a message carries is handed
// over beside it, from another goroutine of whatsmeow's).
func (h *storeHost) messages() []*bridge.RemoteEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*bridge.RemoteEvent
	for _, evt := range h.got {
		if evt.Type == bridge.RemoteMessage {
			out = append(out, evt)
		}
	}
	return out
}

func (h *storeHost) setDown(down bool) { h.mu.Lock(); h.down = down; h.mu.Unlock() }

// signalMessage is a well-formed Signal message whose keys the client has no session
// for: only a decrypted-event buffer can turn it into plaintext.
func signalMessage(t *testing.T) []byte {
	t.Helper()
	ratchet, err := ecc.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	sender, err := ecc.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	receiver, err := ecc.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	macKey := make([]byte, 32)
	ciphertext := make([]byte, 48)
	_, _ = rand.Read(macKey)
	_, _ = rand.Read(ciphertext)
	msg, err := protocol.NewSignalMessage(protocol.CurrentVersion, 7, 6, macKey, ratchet.PublicKey(), ciphertext,
		identity.NewKey(sender.PublicKey()), identity.NewKey(receiver.PublicKey()), serialize.NewProtoBufSerializer().SignalMessage)
	if err != nil {
		t.Fatal(err)
	}
	return msg.Serialize()
}

// TestRedeliveryAfterCrash drives whatsmeow's real client, with the production options,
// through what a crash between decryption and storage leaves: the message's plaintext in
// the decrypted-event buffer (on the bridge's database) and the message unacknowledged.
// Delivered while the bridge cannot store it, it is not acknowledged and its plaintext
// stays; delivered again, it is bridged (the keys that decrypted it are used up, so
// without the buffer it would be lost); delivered a third time, it is not bridged twice.
func TestRedeliveryAfterCrash(t *testing.T) {
	dbtest.EachBackend(t, func(t *testing.T, db *database.Database) {
		ctx := context.Background()
		host := &storeHost{db: db.Database, log: zerolog.Nop()}
		c := New()
		if err := c.Init(ctx, host, &yaml.Node{}); err != nil {
			t.Fatal(err)
		}
		dev := c.store.NewDevice()
		own := types.NewADJID("33612345670", 0, 4)
		dev.ID = &own
		dev.Account = &waAdv.ADVSignedDeviceIdentity{Details: []byte("d"), AccountSignature: make([]byte, 64),
			AccountSignatureKey: make([]byte, 32), DeviceSignature: make([]byte, 64)}
		if err := c.store.PutDevice(ctx, dev); err != nil {
			t.Fatal(err)
		}
		cli := NewRealClient(dev, waLog.Noop).(*realClient)
		s := newSession(c, &bridge.Login{ID: "wa-login", UserMXID: "@alice:example.org"}, own, cli)
		cli.AddEventHandler(s.handleEvent)

		// What the crashed run had decrypted and not yet handed over.
		ciphertext := signalMessage(t)
		plaintext, err := proto.Marshal(&waE2E.Message{Conversation: proto.String("sent just before the crash")})
		if err != nil {
			t.Fatal(err)
		}
		plaintext = append(plaintext, 1) // whatsmeow's padding for message version 2
		hash := sha256.Sum256(ciphertext)
		if err = dev.EventBuffer.DoDecryptionTxn(ctx, func(ctx context.Context) error {
			return dev.EventBuffer.PutBufferedEvent(ctx, hash, plaintext, time.Now())
		}); err != nil {
			t.Fatal(err)
		}
		contact := types.NewJID("33698765432", types.DefaultUserServer)
		deliver := func() {
			cli.DangerousInternals().HandleEncryptedMessage(ctx, &waBinary.Node{Tag: "message", Attrs: waBinary.Attrs{
				"from": contact, "id": "3EB0REDELIVERED", "t": strconv.FormatInt(time.Now().Unix(), 10), "type": "text", "notify": "Bob"},
				Content: []waBinary.Node{{Tag: "enc", Attrs: waBinary.Attrs{"type": "msg", "v": "2"}, Content: ciphertext}}})
		}
		bufferedPlaintext := func() []byte {
			buf, err := dev.EventBuffer.GetBufferedEvent(ctx, hash)
			if err != nil || buf == nil {
				t.Fatalf("buffered event: %+v, %v", buf, err)
			}
			return buf.Plaintext
		}

		host.setDown(true)
		deliver()
		if got := host.messages(); len(got) != 0 || bufferedPlaintext() == nil {
			t.Fatalf("delivered while nothing could be stored: %d messages stored, plaintext kept %v; want none stored and the plaintext kept",
				len(got), bufferedPlaintext() != nil)
		}
		host.setDown(false)
		deliver()
		got := host.messages()
		if len(got) != 1 || got[0].ID != "3EB0REDELIVERED" || got[0].Content == nil || got[0].Content.Body != "sent just before the crash" {
			t.Fatalf("redelivered: stored %+v, want the message", got)
		}
		if bufferedPlaintext() != nil {
			t.Error("the plaintext stayed in the buffer after the message was stored")
		}
		deliver()
		if got = host.messages(); len(got) != 1 {
			t.Fatalf("a third delivery stored %d messages, want the one only", len(got))
		}
	})
}
