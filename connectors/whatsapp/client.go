// Package whatsapp is the WhatsApp connector, built on go.mau.fi/whatsmeow.
package whatsapp

import (
	"context"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"
)

// Client is the narrow slice of *whatsmeow.Client the connector uses. Tests replace it
// with a fake that produces whatsmeow's own QR-channel items and event types, since
// WhatsApp's servers are unreachable from tests.
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
	AddEventHandler(handler func(evt any)) uint32
	RemoveEventHandler(id uint32) bool
	// DeviceJID is the device's JID (Store.ID), nil until paired.
	DeviceJID() *types.JID
}

// clientFactory makes a Client for a device; the real one wraps whatsmeow.NewClient.
type clientFactory func(device *store.Device, log waLog.Logger) Client

// newRealClient is the production clientFactory.
func newRealClient(device *store.Device, log waLog.Logger) Client {
	return &realClient{Client: whatsmeow.NewClient(device, log)}
}

var _ clientFactory = newRealClient

// realClient adapts *whatsmeow.Client to Client. Most methods are promoted from the
// embedded client; only the ones whose shapes differ are written out.
type realClient struct {
	*whatsmeow.Client
}

func (c *realClient) AddEventHandler(handler func(evt any)) uint32 {
	return c.Client.AddEventHandler(whatsmeow.EventHandler(handler))
}

func (c *realClient) DeviceJID() *types.JID {
	if c.Client.Store == nil {
		return nil
	}
	return c.Client.Store.ID
}

var _ Client = (*realClient)(nil)
