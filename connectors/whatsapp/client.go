// Package whatsapp is the WhatsApp connector, built on go.mau.fi/whatsmeow.
package whatsapp

import (
	"context"
	"io"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waWeb"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	waLog "go.mau.fi/whatsmeow/util/log"
)

// Client is the narrow slice of *whatsmeow.Client the connector uses. Tests replace its
// network half with a fake that produces whatsmeow's own QR-channel items and event
// types, since WhatsApp's servers are unreachable from tests; the message builders stay
// whatsmeow's own.
type Client interface {
	Connect() error
	Disconnect()
	IsConnected() bool
	IsLoggedIn() bool
	// GetQRChannel must be called before Connect (whatsmeow refuses it afterwards).
	GetQRChannel(ctx context.Context) (<-chan whatsmeow.QRChannelItem, error)
	// PairPhone needs a connected client; the returned code expires after a few minutes.
	PairPhone(ctx context.Context, phone string, showPushNotification bool, clientType whatsmeow.PairClientType, clientDisplayName string) (string, error)
	Logout(ctx context.Context) error
	// AddEventHandler registers a handler; whatsmeow acknowledges a message to WhatsApp
	// only when every handler returned true, so a message that could not be stored is
	// delivered again.
	AddEventHandler(handler func(evt any) bool) uint32
	RemoveEventHandler(id uint32) bool
	// DeviceJID is the device's JID (Store.ID), nil until paired.
	DeviceJID() *types.JID
	// Device is the session store the client works on (contacts, LID mappings).
	Device() *store.Device

	SendMessage(ctx context.Context, to types.JID, message *waE2E.Message, extra ...whatsmeow.SendRequestExtra) (whatsmeow.SendResponse, error)
	MarkRead(ctx context.Context, ids []types.MessageID, timestamp time.Time, chat, sender types.JID, receiptTypeExtra ...types.ReceiptType) error
	SendChatPresence(ctx context.Context, jid types.JID, state types.ChatPresence, media types.ChatPresenceMedia) error
	SendPresence(ctx context.Context, state types.Presence) error
	Download(ctx context.Context, msg whatsmeow.DownloadableMessage) ([]byte, error)
	// DownloadToFile streams a media message into file, decrypted and checked against
	// the size and hashes the message declares.
	DownloadToFile(ctx context.Context, msg whatsmeow.DownloadableMessage, file whatsmeow.File) error
	// UploadReader encrypts plaintext into tempFile, then uploads it from there.
	UploadReader(ctx context.Context, plaintext io.Reader, tempFile io.ReadWriteSeeker, mediaType whatsmeow.MediaType) (whatsmeow.UploadResponse, error)
	GetGroupInfo(ctx context.Context, jid types.JID) (*types.GroupInfo, error)
	GetProfilePictureInfo(ctx context.Context, jid types.JID, params *whatsmeow.GetProfilePictureParams) (*types.ProfilePictureInfo, error)
	IsOnWhatsApp(ctx context.Context, phones []string) ([]types.IsOnWhatsAppResponse, error)

	// Message builders: pure functions of the client's own JID.
	BuildEdit(chat types.JID, id types.MessageID, newContent *waE2E.Message) *waE2E.Message
	BuildRevoke(chat, sender types.JID, id types.MessageID) *waE2E.Message
	BuildReaction(chat, sender types.JID, id types.MessageID, reaction string) *waE2E.Message
	ParseWebMessage(chatJID types.JID, webMsg *waWeb.WebMessageInfo) (*events.Message, error)
}

// ClientFactory makes a Client for a device; the production one wraps
// whatsmeow.NewClient. Test builds pass another with WithClientFactory.
type ClientFactory func(device *store.Device, log waLog.Logger) Client

// NewRealClient is the production ClientFactory. Fakes embed its result so the
// message builders they do not override stay whatsmeow's.
func NewRealClient(device *store.Device, log waLog.Logger) Client {
	cli := whatsmeow.NewClient(device, log)
	// History sync is requested in full only on first pairing; the bridge takes what
	// the phone sends then and bridges up to the configured count per chat.
	cli.EnableAutoReconnect = true
	// Also when the very first connection fails (the network is down at start-up).
	cli.InitialAutoReconnect = true
	// Messages that cannot be decrypted are asked for again from the phone.
	cli.AutomaticMessageRerequestFromPhone = true
	// A message is acknowledged only once the handlers stored it (the bridge's queue),
	// and its plaintext kept in the session store until then: redelivered after a crash
	// between decryption and storage, it is decrypted from the buffer instead of being
	// dropped as a message whose keys were already used.
	cli.SynchronousAck = true
	cli.EnableDecryptedEventBuffer = true
	return &realClient{Client: cli}
}

var _ ClientFactory = NewRealClient

// realClient adapts *whatsmeow.Client to Client. Most methods are promoted from the
// embedded client; only the ones whose shapes differ are written out.
type realClient struct {
	*whatsmeow.Client
}

// AddEventHandler registers a handler whose false return keeps the event unacknowledged.
func (c *realClient) AddEventHandler(handler func(evt any) bool) uint32 {
	return c.Client.AddEventHandlerWithSuccessStatus(whatsmeow.EventHandlerWithSuccessStatus(handler))
}

// DeviceJID is the paired device's JID, nil before pairing.
func (c *realClient) DeviceJID() *types.JID {
	if c.Client.Store == nil {
		return nil
	}
	return c.Client.Store.ID
}

// Device is the client's session store.
func (c *realClient) Device() *store.Device { return c.Client.Store }

var _ Client = (*realClient)(nil)
