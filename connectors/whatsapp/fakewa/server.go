package fakewa

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"
)

// Server is the fake WhatsApp network the test process runs.
type Server struct {
	ln net.Listener

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever conns or calls change
	conns   []*Conn
	calls   []*Call
	nextMsg int

	// PairCode is what pairing-code logins get.
	PairCode string
	media    map[string][]byte
	groups   map[types.JID]*types.GroupInfo
	avatars  map[types.JID]string
	accounts map[string]types.JID
}

// Conn is one connected fake client (one bridge device).
type Conn struct {
	s *Server
	c net.Conn
	// Device is the device JID the client connected or paired as, "" before pairing
	// (guarded by the server's lock); QR says the client asked for a QR channel.
	Device string
	QR     bool

	mu     sync.Mutex
	enc    *json.Encoder
	nextID int64
	acks   map[int64]chan struct{}
	closed bool
	// gone is closed when the connection ends: pushes not acknowledged by then failed.
	gone chan struct{}
}

// Call is a request the bridge made: a sent message, a read receipt, a typing
// notification, a logout.
type Call struct {
	Conn *Conn
	Op   string
	// For sends: the recipient, the message ID and the message.
	To      types.JID
	ID      string
	Message *waE2E.Message
	// For read receipts: the IDs, chat and sender; for presence: the state.
	IDs    []string
	Chat   types.JID
	Sender types.JID
	State  string
}

// Operation names a test waits for in Calls.
const (
	CallSend         = opSend
	CallMarkRead     = opMarkRead
	CallChatPresence = opChatPresence
	CallLogout       = opLogout
	CallPairPhone    = opPairPhone
)

// NewServer listens on a loopback port.
func NewServer() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakewa: listening: %w", err)
	}
	s := &Server{ln: ln, changed: make(chan struct{}), PairCode: "FAKE-CODE",
		media: map[string][]byte{}, groups: map[types.JID]*types.GroupInfo{}, avatars: map[types.JID]string{},
		accounts: map[string]types.JID{}}
	go s.accept()
	return s, nil
}

// Addr is where clients connect (the connector's fake_network setting).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and drops every connection.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	for _, c := range conns {
		c.c.Close()
	}
}

// AddMedia makes a file downloadable at directPath.
func (s *Server) AddMedia(directPath string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.media[directPath] = data
}

// Media returns an uploaded or added file.
func (s *Server) Media(directPath string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.media[directPath]
}

// SetGroup sets what GetGroupInfo returns for a group.
func (s *Server) SetGroup(gi *types.GroupInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[gi.JID] = gi
}

// SetAvatarURL sets the profile picture URL of a user or group.
func (s *Server) SetAvatarURL(jid types.JID, url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.avatars[jid] = url
}

// AddAccount registers a phone number as being on WhatsApp (for IsOnWhatsApp).
func (s *Server) AddAccount(jid types.JID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[jid.User] = jid
}

func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) accept() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.serve(nc)
	}
}

func (s *Server) serve(nc net.Conn) {
	c := &Conn{s: s, c: nc, enc: json.NewEncoder(nc), acks: map[int64]chan struct{}{}, gone: make(chan struct{})}
	sc := bufio.NewScanner(nc)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		var f frame
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			continue
		}
		switch f.Op {
		case opHello:
			var h helloData
			_ = json.Unmarshal(f.Data, &h)
			s.mu.Lock()
			c.Device, c.QR = h.Device, h.QR
			s.conns = append(s.conns, c)
			s.notify()
			s.mu.Unlock()
			if c.Device != "" {
				go func() { _ = c.Dispatch(context.Background(), &events.Connected{}) }()
			} else {
				// The login websocket is up: whatsmeow signals that with its QR event,
				// which the pairing-code flow waits for.
				go func() { _ = c.push(context.Background(), opEvent, eventData{Kind: "qr_ready"}) }()
			}
		case opAck:
			c.mu.Lock()
			if ch := c.acks[f.ID]; ch != nil {
				close(ch)
				delete(c.acks, f.ID)
			}
			c.mu.Unlock()
		default:
			data, err := s.answer(c, f)
			resp := frame{ID: f.ID, Op: opResponse, Data: data}
			if err != nil {
				resp.Err = err.Error()
			}
			c.mu.Lock()
			_ = c.enc.Encode(resp)
			c.mu.Unlock()
		}
	}
	c.mu.Lock()
	c.closed = true
	close(c.gone)
	c.mu.Unlock()
	s.mu.Lock()
	s.notify()
	s.mu.Unlock()
}

// answer handles one request and records it as a Call.
func (s *Server) answer(c *Conn, f frame) (json.RawMessage, error) {
	call := &Call{Conn: c, Op: f.Op}
	var out any
	var err error
	switch f.Op {
	case opSend:
		var d sendData
		if err = json.Unmarshal(f.Data, &d); err != nil {
			return nil, err
		}
		call.To, call.ID, call.Message = d.To, d.ID, &waE2E.Message{}
		if err = proto.Unmarshal(d.Proto, call.Message); err != nil {
			return nil, err
		}
		out = sendResp{ID: d.ID, Timestamp: time.Now().UnixMilli()}
	case opMarkRead:
		var d markReadData
		_ = json.Unmarshal(f.Data, &d)
		call.IDs, call.Chat, call.Sender = d.IDs, d.Chat, d.Sender
	case opChatPresence, opPresence:
		var d presenceData
		_ = json.Unmarshal(f.Data, &d)
		call.Chat, call.State = d.JID, d.State
	case opPairPhone:
		s.mu.Lock()
		out = s.PairCode
		s.mu.Unlock()
	case opLogout:
	case opDownload:
		var d mediaData
		_ = json.Unmarshal(f.Data, &d)
		data := s.Media(d.DirectPath)
		if data == nil {
			return nil, errors.New("download failed with status code 404")
		}
		return mustJSON(mediaData{Data: data}), nil
	case opUpload:
		var d mediaData
		_ = json.Unmarshal(f.Data, &d)
		s.mu.Lock()
		s.nextMsg++
		path := fmt.Sprintf("/upload/%d", s.nextMsg)
		s.media[path] = d.Data
		s.mu.Unlock()
		return mustJSON(mediaData{DirectPath: path}), nil
	case opGroupInfo:
		var d jidData
		_ = json.Unmarshal(f.Data, &d)
		s.mu.Lock()
		gi := s.groups[d.JID]
		s.mu.Unlock()
		if gi == nil {
			return nil, errors.New("info query returned status 404: item-not-found")
		}
		return mustJSON(gi), nil
	case opAvatar:
		var d jidData
		_ = json.Unmarshal(f.Data, &d)
		s.mu.Lock()
		url := s.avatars[d.JID]
		s.mu.Unlock()
		return mustJSON(types.ProfilePictureInfo{URL: url, ID: "1"}), nil
	case opIsOnWhatsApp:
		var d phonesData
		_ = json.Unmarshal(f.Data, &d)
		var resp []types.IsOnWhatsAppResponse
		s.mu.Lock()
		for _, p := range d.Phones {
			jid, ok := s.accounts[strings.TrimPrefix(p, "+")]
			resp = append(resp, types.IsOnWhatsAppResponse{Query: p, JID: jid, IsIn: ok})
		}
		s.mu.Unlock()
		return mustJSON(resp), nil
	default:
		return nil, fmt.Errorf("fakewa: unknown request %q", f.Op)
	}
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.notify()
	s.mu.Unlock()
	if out == nil {
		return nil, err
	}
	return mustJSON(out), err
}

// WaitConn waits for a connection that match accepts (e.g. an unpaired one, or the
// device of an account).
func (s *Server) WaitConn(ctx context.Context, match func(*Conn) bool) (*Conn, error) {
	for {
		s.mu.Lock()
		changed := s.changed
		for i := len(s.conns) - 1; i >= 0; i-- {
			c := s.conns[i]
			c.mu.Lock()
			closed := c.closed
			c.mu.Unlock()
			if !closed && match(c) {
				s.mu.Unlock()
				return c, nil
			}
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("fakewa: waiting for a connection: %w", ctx.Err())
		case <-changed:
		}
	}
}

// Unpaired matches a connection that is logging in.
func Unpaired(c *Conn) bool { return c.Device == "" }

// DeviceOf matches the connection of an account's device.
func DeviceOf(phone string) func(*Conn) bool {
	return func(c *Conn) bool {
		return strings.HasPrefix(c.Device, phone+":") || strings.HasPrefix(c.Device, phone+"@")
	}
}

// WaitCall waits for a request matching match that was made after the first skip
// calls, and returns it with its index (pass index+1 as skip to wait for a later one).
func (s *Server) WaitCall(ctx context.Context, skip int, match func(*Call) bool) (*Call, int, error) {
	for {
		s.mu.Lock()
		changed := s.changed
		for i := skip; i < len(s.calls); i++ {
			if match(s.calls[i]) {
				c := s.calls[i]
				s.mu.Unlock()
				return c, i, nil
			}
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("fakewa: waiting for a request: %w (requests so far: %s)", ctx.Err(), s.callSummary())
		case <-changed:
		}
	}
}

// CallCount is how many requests were made so far.
func (s *Server) CallCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func (s *Server) callSummary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, c := range s.calls {
		parts = append(parts, c.Op+"→"+c.To.String())
	}
	return strings.Join(parts, ", ")
}

// Op matches calls of one operation.
func Op(op string) func(*Call) bool { return func(c *Call) bool { return c.Op == op } }

// push sends a frame and waits until the client has handled it (for events: until the
// bridge's handlers returned, i.e. the event is queued durably).
func (c *Conn) push(ctx context.Context, op string, data any) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("fakewa: connection closed")
	}
	c.nextID++
	id := c.nextID
	ack := make(chan struct{})
	c.acks[id] = ack
	err := c.enc.Encode(frame{ID: id, Op: op, Data: mustJSON(data)})
	c.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ack:
		return nil
	case <-c.gone:
		// The client went away before acknowledging: as for WhatsApp, not delivered.
		return errors.New("fakewa: connection closed before the event was acknowledged")
	}
}

// SendQR shows a QR code on the client's QR channel.
func (c *Conn) SendQR(ctx context.Context, code string, timeout time.Duration) error {
	return c.push(ctx, opQR, qrData{Code: code, TimeoutMS: timeout.Milliseconds()})
}

// QREvent ends the client's QR channel with a whatsmeow QR event ("timeout",
// "err-client-outdated", …).
func (c *Conn) QREvent(ctx context.Context, event string) error {
	return c.push(ctx, opQREvent, qrData{Event: event})
}

// PairSuccess completes a login as the given device JID (e.g. 33612345678:4@s.whatsapp.net).
func (c *Conn) PairSuccess(ctx context.Context, device types.JID, pushName string) error {
	c.s.mu.Lock()
	c.Device = device.String()
	c.s.notify()
	c.s.mu.Unlock()
	return c.push(ctx, opPairSuccess, pairData{JID: device, PushName: pushName})
}

// Dispatch delivers a whatsmeow event (*events.Message, *events.Receipt, …) to the
// client and waits until the bridge has handled it.
func (c *Conn) Dispatch(ctx context.Context, evt any) error {
	ed, err := encodeEvent(evt)
	if err != nil {
		return err
	}
	return c.push(ctx, opEvent, ed)
}

// StoreLID tells the client's store that a hidden ID belongs to a phone number, as
// WhatsApp's usync answers do.
func (c *Conn) StoreLID(ctx context.Context, lid, pn types.JID) error {
	return c.push(ctx, opStoreLID, lidData{LID: lid, PN: pn})
}

// StoreContact puts an address-book name or push name into the client's store.
func (c *Conn) StoreContact(ctx context.Context, jid types.JID, fullName, pushName string) error {
	return c.push(ctx, opStoreContact, contactData{JID: jid, FullName: fullName, PushName: pushName})
}

// Hangup closes the connection from the network's side.
func (c *Conn) Hangup() { c.c.Close() }
