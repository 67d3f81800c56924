package fakewa

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	waLog "go.mau.fi/whatsmeow/util/log"
	"google.golang.org/protobuf/proto"

	"github.com/passerelle/passerelle/connectors/whatsapp"
)

// client is the bridge-side fake: the network half of whatsmeow's client, talking to
// a Server. The embedded real client (never connected) supplies the message builders.
type client struct {
	whatsapp.Client
	addr   string
	device *store.Device
	log    waLog.Logger

	mu       sync.Mutex
	conn     net.Conn
	enc      *json.Encoder
	nextID   int64
	pending  map[int64]chan frame
	handlers map[uint32]func(any) bool
	nextH    uint32
	qr       chan whatsmeow.QRChannelItem
	// dispatchMu keeps handlers sequential, as whatsmeow runs them.
	dispatchMu sync.Mutex
}

// NewFactory returns a ClientFactory whose clients talk to the fake network at addr.
func NewFactory(addr func() string) whatsapp.ClientFactory {
	return func(device *store.Device, log waLog.Logger) whatsapp.Client {
		return &client{Client: whatsapp.NewRealClient(device, log), addr: addr(), device: device, log: log,
			pending: map[int64]chan frame{}, handlers: map[uint32]func(any) bool{}}
	}
}

// The methods below implement whatsapp.Client against the fake network, with the
// behaviour of whatsmeow's own that the connector relies on.

func (c *client) Connect() error {
	c.mu.Lock()
	if c.conn != nil {
		c.mu.Unlock()
		return whatsmeow.ErrAlreadyConnected
	}
	conn, err := net.Dial("tcp", c.addr)
	if err != nil {
		c.mu.Unlock()
		return fmt.Errorf("fakewa: dialing %s: %w", c.addr, err)
	}
	c.conn, c.enc = conn, json.NewEncoder(conn)
	hello := helloData{QR: c.qr != nil}
	if c.device.ID != nil {
		hello.Device = c.device.ID.String()
	}
	err = c.enc.Encode(frame{Op: opHello, Data: mustJSON(hello)})
	c.mu.Unlock()
	if err != nil {
		return err
	}
	pushes := make(chan frame, 1024)
	go c.pushLoop(conn, pushes)
	go c.readLoop(conn, pushes)
	return nil
}

// pushLoop handles pushed frames one at a time, in order, apart from the reader, so a
// handler can make requests (as whatsmeow's handler queue allows).
func (c *client) pushLoop(conn net.Conn, pushes <-chan frame) {
	ack := func(f frame) {
		c.mu.Lock()
		if c.conn == conn {
			_ = c.enc.Encode(frame{ID: f.ID, Op: opAck})
		}
		c.mu.Unlock()
	}
	for f := range pushes {
		if f.Op == opQR || f.Op == opQREvent {
			// QR items are shown, not stored: acknowledged on receipt, since a login that
			// ends with one disconnects at once.
			ack(f)
			c.handlePush(f)
			continue
		}
		c.handlePush(f)
		ack(f)
	}
}

func (c *client) readLoop(conn net.Conn, pushes chan<- frame) {
	defer close(pushes)
	sc := bufio.NewScanner(conn)
	// Small to start (it grows for media frames): a buffer per linked session would
	// otherwise be most of what the load tool measures per session.
	sc.Buffer(make([]byte, 16<<10), 256<<20)
	for sc.Scan() {
		var f frame
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			c.log.Errorf("fakewa: bad frame: %v", err)
			continue
		}
		if f.Op == opResponse {
			c.mu.Lock()
			ch := c.pending[f.ID]
			delete(c.pending, f.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- f
			}
			continue
		}
		pushes <- f
	}
	c.mu.Lock()
	wasCurrent := c.conn == conn
	if wasCurrent {
		c.conn = nil
	}
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	if wasCurrent {
		// The server hung up (not our own Disconnect): whatsmeow reports that, then
		// reconnects by itself (EnableAutoReconnect), as the fake does.
		c.dispatch(&events.Disconnected{})
		go c.reconnect()
	}
}

// reconnect dials again after a drop, a few times, like whatsmeow's auto-reconnect.
func (c *client) reconnect() {
	for attempt := 0; attempt < 50; attempt++ {
		time.Sleep(100 * time.Millisecond)
		err := c.Connect()
		if err == nil || errors.Is(err, whatsmeow.ErrAlreadyConnected) {
			return
		}
	}
}

func (c *client) handlePush(f frame) {
	ctx := context.Background()
	switch f.Op {
	case opQR, opQREvent:
		var d qrData
		_ = json.Unmarshal(f.Data, &d)
		c.mu.Lock()
		qr := c.qr
		c.mu.Unlock()
		if qr == nil {
			return
		}
		if f.Op == opQR {
			qr <- whatsmeow.QRChannelItem{Event: whatsmeow.QRChannelEventCode, Code: d.Code, Timeout: time.Duration(d.TimeoutMS) * time.Millisecond}
			return
		}
		qr <- whatsmeow.QRChannelItem{Event: d.Event}
		c.closeQR()
	case opPairSuccess:
		var d pairData
		_ = json.Unmarshal(f.Data, &d)
		// As whatsmeow does on a successful pairing: the device gets its identity and
		// is saved to the store.
		jid := d.JID
		c.device.ID = &jid
		c.device.LID = d.LID
		c.device.PushName = d.PushName
		// The signed identity WhatsApp's pairing message carries; the fake signs nothing.
		c.device.Account = &waAdv.ADVSignedDeviceIdentity{Details: []byte{}, AccountSignature: make([]byte, 64),
			AccountSignatureKey: make([]byte, 32), DeviceSignature: make([]byte, 64)}
		if err := c.device.Save(ctx); err != nil {
			c.log.Errorf("fakewa: saving paired device: %v", err)
		}
		c.dispatch(&events.PairSuccess{ID: jid, LID: d.LID})
		c.mu.Lock()
		qr := c.qr
		c.mu.Unlock()
		if qr != nil {
			qr <- whatsmeow.QRChannelSuccess
			c.closeQR()
		}
		c.dispatch(&events.Connected{})
	case opStoreLID:
		var d lidData
		_ = json.Unmarshal(f.Data, &d)
		if err := c.device.LIDs.PutLIDMapping(ctx, d.LID, d.PN); err != nil {
			c.log.Errorf("fakewa: storing LID mapping: %v", err)
		}
	case opStoreContact:
		var d contactData
		_ = json.Unmarshal(f.Data, &d)
		if d.FullName != "" {
			if err := c.device.Contacts.PutContactName(ctx, d.JID, d.FullName, d.FullName); err != nil {
				c.log.Errorf("fakewa: storing contact name: %v", err)
			}
		}
		if d.PushName != "" {
			if _, _, err := c.device.Contacts.PutPushName(ctx, d.JID, d.PushName); err != nil {
				c.log.Errorf("fakewa: storing push name: %v", err)
			}
		}
	case opEvent:
		var d eventData
		if err := json.Unmarshal(f.Data, &d); err != nil {
			return
		}
		evt, err := decodeEvent(&d)
		if err != nil {
			c.log.Errorf("fakewa: %v", err)
			return
		}
		if m, ok := evt.(*events.Message); ok {
			// whatsmeow learns LID↔phone mappings and push names from message metadata
			// itself, before the handlers run.
			if m.Info.Sender.Server == types.HiddenUserServer && m.Info.SenderAlt.Server == types.DefaultUserServer {
				_ = c.device.LIDs.PutLIDMapping(ctx, m.Info.Sender.ToNonAD(), m.Info.SenderAlt.ToNonAD())
			}
			if m.Info.PushName != "" && !m.Info.IsFromMe {
				_, _, _ = c.device.Contacts.PutPushName(ctx, m.Info.Sender.ToNonAD(), m.Info.PushName)
			}
		}
		if _, ok := evt.(*events.LoggedOut); ok {
			// whatsmeow deletes the device from the store when logged out remotely.
			_ = c.device.Delete(ctx)
		}
		c.dispatch(evt)
	case opCloseFromPeer:
		c.Disconnect()
	}
}

func (c *client) closeQR() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.qr != nil {
		close(c.qr)
		c.qr = nil
	}
}

func (c *client) dispatch(evt any) {
	c.dispatchMu.Lock()
	defer c.dispatchMu.Unlock()
	c.mu.Lock()
	hs := make([]func(any) bool, 0, len(c.handlers))
	for _, h := range c.handlers {
		hs = append(hs, h)
	}
	c.mu.Unlock()
	for _, h := range hs {
		h(evt)
	}
}

func (c *client) Disconnect() {
	c.mu.Lock()
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

func (c *client) IsConnected() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.conn != nil }
func (c *client) IsLoggedIn() bool  { return c.IsConnected() && c.device.ID != nil }

func (c *client) GetQRChannel(ctx context.Context) (<-chan whatsmeow.QRChannelItem, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return nil, whatsmeow.ErrQRAlreadyConnected
	}
	c.qr = make(chan whatsmeow.QRChannelItem, 8)
	return c.qr, nil
}

func (c *client) AddEventHandler(h func(evt any) bool) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextH++
	c.handlers[c.nextH] = h
	return c.nextH
}

func (c *client) RemoveEventHandler(id uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.handlers[id]
	delete(c.handlers, id)
	return ok
}

func (c *client) DeviceJID() *types.JID { return c.device.ID }
func (c *client) Device() *store.Device { return c.device }

// call sends a request and waits for its response.
func (c *client) call(ctx context.Context, op string, data any, out any) error {
	c.mu.Lock()
	if c.conn == nil {
		c.mu.Unlock()
		return whatsmeow.ErrNotConnected
	}
	c.nextID++
	id := c.nextID
	ch := make(chan frame, 1)
	c.pending[id] = ch
	err := c.enc.Encode(frame{ID: id, Op: op, Data: mustJSON(data)})
	c.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case f, ok := <-ch:
		if !ok {
			return whatsmeow.ErrNotConnected
		}
		if f.Err != "" {
			return errors.New(f.Err)
		}
		if out != nil {
			return json.Unmarshal(f.Data, out)
		}
		return nil
	}
}

func (c *client) PairPhone(ctx context.Context, phone string, _ bool, _ whatsmeow.PairClientType, _ string) (string, error) {
	var code string
	err := c.call(ctx, opPairPhone, map[string]string{"phone": phone}, &code)
	return code, err
}

func (c *client) Logout(ctx context.Context) error {
	if err := c.call(ctx, opLogout, nil, nil); err != nil {
		return err
	}
	c.Disconnect()
	return c.device.Delete(ctx)
}

func (c *client) SendMessage(ctx context.Context, to types.JID, message *waE2E.Message, extra ...whatsmeow.SendRequestExtra) (whatsmeow.SendResponse, error) {
	msgID := whatsmeow.GenerateMessageID()
	if len(extra) > 0 && extra[0].ID != "" {
		msgID = extra[0].ID
	}
	data, err := proto.Marshal(message)
	if err != nil {
		return whatsmeow.SendResponse{}, err
	}
	var resp sendResp
	if err = c.call(ctx, opSend, sendData{To: to, ID: msgID, Proto: data}, &resp); err != nil {
		return whatsmeow.SendResponse{}, err
	}
	return whatsmeow.SendResponse{ID: resp.ID, Timestamp: time.UnixMilli(resp.Timestamp)}, nil
}

func (c *client) MarkRead(ctx context.Context, ids []types.MessageID, _ time.Time, chat, sender types.JID, _ ...types.ReceiptType) error {
	return c.call(ctx, opMarkRead, markReadData{IDs: ids, Chat: chat, Sender: sender}, nil)
}

func (c *client) SendChatPresence(ctx context.Context, jid types.JID, state types.ChatPresence, _ types.ChatPresenceMedia) error {
	return c.call(ctx, opChatPresence, presenceData{JID: jid, State: string(state)}, nil)
}

func (c *client) SendPresence(ctx context.Context, state types.Presence) error {
	return c.call(ctx, opPresence, presenceData{State: string(state)}, nil)
}

func (c *client) Download(ctx context.Context, msg whatsmeow.DownloadableMessage) ([]byte, error) {
	var d mediaData
	if err := c.call(ctx, opDownload, mediaData{DirectPath: msg.GetDirectPath()}, &d); err != nil {
		return nil, err
	}
	return d.Data, nil
}

// DownloadToFile writes what the fake server holds into file, as whatsmeow does (the
// whole body first), then checks it against the length the message declares.
func (c *client) DownloadToFile(ctx context.Context, msg whatsmeow.DownloadableMessage, file whatsmeow.File) error {
	data, err := c.Download(ctx, msg)
	if err != nil {
		return err
	}
	if _, err = file.Write(data); err != nil {
		return err
	}
	// Test messages may leave the length out (real ones never do): only a stated one is checked.
	if sized, ok := msg.(interface{ GetFileLength() uint64 }); ok && sized.GetFileLength() != 0 && sized.GetFileLength() != uint64(len(data)) {
		return fmt.Errorf("%w: expected %d, got %d", whatsmeow.ErrFileLengthMismatch, sized.GetFileLength(), len(data))
	}
	return nil
}

// UploadReader reads the plaintext and, as whatsmeow does, writes as many bytes into
// tempFile as WhatsApp's encryption makes of it (padding to a block and a 10-byte MAC),
// so a temporary file too small for the ciphertext fails here as it would for real.
func (c *client) UploadReader(ctx context.Context, plaintext io.Reader, tempFile io.ReadWriteSeeker, mediaType whatsmeow.MediaType) (whatsmeow.UploadResponse, error) {
	data, err := io.ReadAll(plaintext)
	if err != nil {
		return whatsmeow.UploadResponse{}, fmt.Errorf("reading the file to upload: %w", err)
	}
	ciphertext := append(bytes.Clone(data), make([]byte, 16-len(data)%16+10)...)
	if _, err = tempFile.Write(ciphertext); err != nil {
		return whatsmeow.UploadResponse{}, fmt.Errorf("failed to encrypt file: %w", err)
	}
	if _, err = tempFile.Seek(0, io.SeekStart); err != nil {
		return whatsmeow.UploadResponse{}, err
	}
	var d mediaData
	if err := c.call(ctx, opUpload, mediaData{Type: string(mediaType), Data: data}, &d); err != nil {
		return whatsmeow.UploadResponse{}, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return whatsmeow.UploadResponse{URL: "https://mmg.fakewa.invalid" + d.DirectPath, DirectPath: d.DirectPath,
		MediaKey: key, FileEncSHA256: key, FileSHA256: key, FileLength: uint64(len(data))}, nil
}

func (c *client) GetGroupInfo(ctx context.Context, jid types.JID) (*types.GroupInfo, error) {
	var gi types.GroupInfo
	if err := c.call(ctx, opGroupInfo, jidData{JID: jid}, &gi); err != nil {
		return nil, err
	}
	return &gi, nil
}

func (c *client) GetProfilePictureInfo(ctx context.Context, jid types.JID, _ *whatsmeow.GetProfilePictureParams) (*types.ProfilePictureInfo, error) {
	var info types.ProfilePictureInfo
	if err := c.call(ctx, opAvatar, jidData{JID: jid}, &info); err != nil {
		return nil, err
	}
	if info.URL == "" {
		return nil, whatsmeow.ErrProfilePictureNotSet
	}
	return &info, nil
}

func (c *client) IsOnWhatsApp(ctx context.Context, phones []string) ([]types.IsOnWhatsAppResponse, error) {
	var resp []types.IsOnWhatsAppResponse
	err := c.call(ctx, opIsOnWhatsApp, phonesData{Phones: phones}, &resp)
	return resp, err
}
