// Package fakewa stands in for WhatsApp's servers in end-to-end tests, which cannot
// reach the real ones. The bridge binary built with -tags passerelle_loopback gets a
// "whatsapp" connector whose whatsmeow client talks to a Server run by the test
// process; everything else in the connector (the session store, the message builders,
// the conversions, the core) is the real code.
//
// The test drives the network with whatsmeow's own types: it pushes events.Message,
// events.Receipt, events.HistorySync and the others, QR channel items and pairing
// results, and it inspects the waE2E.Message protobufs the bridge sent.
package fakewa

import (
	"encoding/json"
	"fmt"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"
)

// frame is one JSON line of the fake protocol. Requests and pushed events carry an ID
// that their response (or acknowledgement) repeats.
type frame struct {
	ID   int64           `json:"id,omitempty"`
	Op   string          `json:"op"`
	Data json.RawMessage `json:"data,omitempty"`
	Err  string          `json:"err,omitempty"`
}

// Operations from the client (the bridge) to the server (the test).
const (
	opHello         = "hello"
	opAck           = "ack"
	opPairPhone     = "pair_phone"
	opLogout        = "logout"
	opSend          = "send"
	opMarkRead      = "mark_read"
	opChatPresence  = "chat_presence"
	opPresence      = "presence"
	opDownload      = "download"
	opUpload        = "upload"
	opGroupInfo     = "group_info"
	opAvatar        = "avatar"
	opIsOnWhatsApp  = "is_on_whatsapp"
	opResponse      = "response"
	opQR            = "qr"
	opQREvent       = "qr_event"
	opPairSuccess   = "pair_success"
	opEvent         = "event"
	opStoreLID      = "store_lid"
	opStoreContact  = "store_contact"
	opCloseFromPeer = "close"
)

type helloData struct {
	Device string `json:"device,omitempty"`
	QR     bool   `json:"qr,omitempty"`
}

type qrData struct {
	Code      string `json:"code,omitempty"`
	Event     string `json:"event,omitempty"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
}

type pairData struct {
	JID      types.JID `json:"jid"`
	LID      types.JID `json:"lid"`
	PushName string    `json:"push_name"`
}

type sendData struct {
	To    types.JID `json:"to"`
	ID    string    `json:"id"`
	Proto []byte    `json:"proto"`
}

type sendResp struct {
	ID        string `json:"id"`
	Timestamp int64  `json:"ts"`
}

type markReadData struct {
	IDs    []string  `json:"ids"`
	Chat   types.JID `json:"chat"`
	Sender types.JID `json:"sender"`
}

type presenceData struct {
	JID   types.JID `json:"jid"`
	State string    `json:"state"`
}

type mediaData struct {
	DirectPath string `json:"direct_path,omitempty"`
	Type       string `json:"type,omitempty"`
	Data       []byte `json:"data,omitempty"`
}

type jidData struct {
	JID types.JID `json:"jid"`
}

type lidData struct {
	LID types.JID `json:"lid"`
	PN  types.JID `json:"pn"`
}

type contactData struct {
	JID      types.JID `json:"jid"`
	FullName string    `json:"full_name,omitempty"`
	PushName string    `json:"push_name,omitempty"`
}

type phonesData struct {
	Phones []string `json:"phones"`
}

// eventData is a whatsmeow event on the wire: JSON for plain structs, protobuf bytes
// for the parts that are protobufs.
type eventData struct {
	Kind  string          `json:"kind"`
	JSON  json.RawMessage `json:"json,omitempty"`
	Proto []byte          `json:"proto,omitempty"`
}

// encodeEvent puts a whatsmeow event on the wire.
func encodeEvent(evt any) (*eventData, error) {
	var err error
	ed := &eventData{}
	switch e := evt.(type) {
	case *events.Message:
		ed.Kind = "message"
		raw := e.RawMessage
		if raw == nil {
			raw = e.Message
		}
		if ed.Proto, err = proto.Marshal(raw); err != nil {
			return nil, err
		}
		ed.JSON, err = json.Marshal(e.Info)
	case *events.HistorySync:
		ed.Kind = "history_sync"
		ed.Proto, err = proto.Marshal(e.Data)
	case *events.Receipt:
		ed.Kind, ed.JSON = "receipt", mustJSON(e)
	case *events.ChatPresence:
		ed.Kind, ed.JSON = "chat_presence", mustJSON(e)
	case *events.GroupInfo:
		ed.Kind, ed.JSON = "group_info", mustJSON(e)
	case *events.PushName:
		ed.Kind, ed.JSON = "push_name", mustJSON(e)
	case *events.Picture:
		ed.Kind, ed.JSON = "picture", mustJSON(e)
	case *events.UndecryptableMessage:
		ed.Kind, ed.JSON = "undecryptable", mustJSON(e)
	case *events.LoggedOut:
		ed.Kind, ed.JSON = "logged_out", mustJSON(e)
	case *events.Connected:
		ed.Kind = "connected"
	case *events.Disconnected:
		ed.Kind = "disconnected"
	case *events.ClientOutdated:
		ed.Kind = "client_outdated"
	case *events.StreamReplaced:
		ed.Kind = "stream_replaced"
	case *events.TemporaryBan:
		ed.Kind, ed.JSON = "temporary_ban", mustJSON(e)
	default:
		return nil, fmt.Errorf("fakewa: cannot send %T", evt)
	}
	return ed, err
}

// decodeEvent turns a wire event back into whatsmeow's type.
func decodeEvent(ed *eventData) (any, error) {
	var target any
	switch ed.Kind {
	case "message":
		var info types.MessageInfo
		if err := json.Unmarshal(ed.JSON, &info); err != nil {
			return nil, err
		}
		raw := &waE2E.Message{}
		if err := proto.Unmarshal(ed.Proto, raw); err != nil {
			return nil, err
		}
		evt := &events.Message{Info: info, RawMessage: raw}
		return evt.UnwrapRaw(), nil
	case "history_sync":
		data := &waHistorySync.HistorySync{}
		if err := proto.Unmarshal(ed.Proto, data); err != nil {
			return nil, err
		}
		return &events.HistorySync{Data: data}, nil
	case "receipt":
		target = &events.Receipt{}
	case "chat_presence":
		target = &events.ChatPresence{}
	case "group_info":
		target = &events.GroupInfo{}
	case "push_name":
		target = &events.PushName{}
	case "picture":
		target = &events.Picture{}
	case "undecryptable":
		target = &events.UndecryptableMessage{}
	case "logged_out":
		target = &events.LoggedOut{}
	case "temporary_ban":
		target = &events.TemporaryBan{}
	case "connected":
		return &events.Connected{}, nil
	case "qr_ready":
		return &events.QR{Codes: []string{"fakewa-login-ready"}}, nil
	case "disconnected":
		return &events.Disconnected{}, nil
	case "client_outdated":
		return &events.ClientOutdated{}, nil
	case "stream_replaced":
		return &events.StreamReplaced{}, nil
	default:
		return nil, fmt.Errorf("fakewa: unknown event kind %q", ed.Kind)
	}
	if err := json.Unmarshal(ed.JSON, target); err != nil {
		return nil, err
	}
	return target, nil
}

func mustJSON(v any) json.RawMessage {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fakewa: encoding %T: %v", v, err))
	}
	return data
}
