// Package loopnet is a tiny chat network that lives in a test process (or the demo): the
// loopback connector talks to it over HTTP, and tests drive it directly to play remote
// users. It is never part of a production build's behaviour.
package loopnet

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Event kinds on the network.
const (
	KindMessage  = "message"
	KindEdit     = "edit"
	KindRedact   = "redact"
	KindReact    = "react"
	KindUnreact  = "unreact"
	KindJoin     = "join"
	KindLeave    = "leave"
	KindTopic    = "topic"
	KindTyping   = "typing"
	KindReceipt  = "receipt"
	KindPresence = "presence"
)

// Event is one thing that happened on the network.
type Event struct {
	Seq        int64     `json:"seq"`
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	Chat       string    `json:"chat"`
	DMFor      string    `json:"dm_for,omitempty"`
	Sender     string    `json:"sender"`
	SenderName string    `json:"sender_name,omitempty"`
	Text       string    `json:"text,omitempty"`
	HTML       string    `json:"html,omitempty"`
	MsgType    string    `json:"msgtype,omitempty"`
	Target     string    `json:"target,omitempty"`
	ReplyTo    string    `json:"reply_to,omitempty"`
	Emoji      string    `json:"emoji,omitempty"`
	FileName   string    `json:"file_name,omitempty"`
	FileData   []byte    `json:"file_data,omitempty"`
	MimeType   string    `json:"mime_type,omitempty"`
	Mentions   []string  `json:"mentions,omitempty"`
	ClientTxn  string    `json:"client_txn,omitempty"`
	Time       time.Time `json:"time"`
}

// Server is the network. The zero value is not usable: use New.
type Server struct {
	mu     sync.Mutex
	cond   *sync.Cond
	events []Event
	byTxn  map[string]string
	nextID int
	logins map[string]*pendingLogin
	srv    *http.Server
	ln     net.Listener
	// URL is where the connector reaches the network.
	URL string
}

type pendingLogin struct {
	ID      string
	Code    string
	Account string
	Done    bool
	Failed  string
	version int
}

// New starts a network listening on a free loopback port.
func New() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	s := &Server{byTxn: map[string]string{}, logins: map[string]*pendingLogin{}, ln: ln, URL: "http://" + ln.Addr().String()}
	s.cond = sync.NewCond(&s.mu)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /send", s.handleSend)
	mux.HandleFunc("GET /events", s.handleEvents)
	mux.HandleFunc("POST /login/start", s.handleLoginStart)
	mux.HandleFunc("GET /login/wait", s.handleLoginWait)
	mux.HandleFunc("GET /user", s.handleUser)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	// Wake long-polls regularly so they notice closed clients.
	go func() {
		for {
			time.Sleep(time.Second)
			s.mu.Lock()
			if s.srv == nil {
				s.mu.Unlock()
				return
			}
			s.cond.Broadcast()
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// Close stops the network.
func (s *Server) Close() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.cond.Broadcast()
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (s *Server) append(e Event) Event {
	s.nextID++
	if e.ID == "" {
		e.ID = "m" + strconv.Itoa(s.nextID)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Seq = int64(len(s.events) + 1)
	s.events = append(s.events, e)
	s.cond.Broadcast()
	return e
}

// Inject makes a remote user do something; it returns the event with its ID.
func (s *Server) Inject(e Event) Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Kind == "" {
		e.Kind = KindMessage
	}
	return s.append(e)
}

// Events returns a copy of everything that happened in a chat, in order.
func (s *Server) Events(chat string) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Event
	for _, e := range s.events {
		if e.Chat == chat {
			out = append(out, e)
		}
	}
	return out
}

// WaitEvent waits for an event in chat matching match (already there or to come).
func (s *Server) WaitEvent(ctx context.Context, chat string, match func(Event) bool) (Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; ; {
		for ; i < len(s.events); i++ {
			if e := s.events[i]; e.Chat == chat && match(e) {
				return e, nil
			}
		}
		if ctx.Err() != nil {
			var seen []string
			for _, e := range s.events {
				if e.Chat == chat {
					seen = append(seen, fmt.Sprintf("%s/%s:%q", e.Kind, e.Sender, e.Text))
				}
			}
			return Event{}, fmt.Errorf("no matching event in %s (saw %d: %v): %w", chat, len(seen), truncate(seen, 10), ctx.Err())
		}
		s.cond.Wait()
	}
}

func truncate(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// PendingLogin returns the current code of the most recent unfinished login.
func (s *Server) PendingLogin() (id, code string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *pendingLogin
	for _, l := range s.logins {
		if !l.Done && l.Failed == "" && (best == nil || l.ID > best.ID) {
			best = l
		}
	}
	if best == nil {
		return "", "", false
	}
	return best.ID, best.Code, true
}

// RotateLogin gives a pending login a new code, as QR-code networks do.
func (s *Server) RotateLogin(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logins[id]
	if l == nil {
		return ""
	}
	l.version++
	l.Code = fmt.Sprintf("loopnet-login:%s:%d", id, l.version)
	s.cond.Broadcast()
	return l.Code
}

// ConfirmLogin completes a pending login as account, as a phone scanning the code would.
func (s *Server) ConfirmLogin(id, account string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.logins[id]; l != nil {
		l.Done, l.Account = true, account
		s.cond.Broadcast()
	}
}

// FailLogin rejects a pending login.
func (s *Server) FailLogin(id, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.logins[id]; l != nil {
		l.Failed = reason
		s.cond.Broadcast()
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// SendRequest is what the connector posts to send something as an account.
type SendRequest struct {
	Account string `json:"account"`
	Event
}

func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Account == "" || req.Chat == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Client transaction IDs make sends idempotent, as WhatsApp's client-chosen message
	// IDs do: a bridge that crashed after sending can safely send again.
	if req.ClientTxn != "" {
		if id, ok := s.byTxn[req.Account+"\x00"+req.ClientTxn]; ok {
			writeJSON(w, map[string]string{"id": id})
			return
		}
	}
	e := req.Event
	e.Sender = req.Account
	e.ID, e.Seq = "", 0
	if e.Kind == "" {
		e.Kind = KindMessage
	}
	e = s.append(e)
	if req.ClientTxn != "" {
		s.byTxn[req.Account+"\x00"+req.ClientTxn] = e.ID
	}
	writeJSON(w, map[string]string{"id": e.ID})
}

// handleEvents long-polls events after a sequence number.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	deadline := time.Now().Add(20 * time.Second)
	s.mu.Lock()
	for int64(len(s.events)) <= after && time.Now().Before(deadline) && r.Context().Err() == nil && s.srv != nil {
		s.cond.Wait()
	}
	var out []Event
	if int64(len(s.events)) > after {
		out = append(out, s.events[after:]...)
	}
	s.mu.Unlock()
	if len(out) > 500 {
		out = out[:500]
	}
	writeJSON(w, out)
}

func (s *Server) handleLoginStart(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := fmt.Sprintf("L%04d", s.nextID)
	l := &pendingLogin{ID: id, Code: fmt.Sprintf("loopnet-login:%s:0", id)}
	s.logins[id] = l
	writeJSON(w, map[string]any{"id": id, "code": l.Code})
}

// handleLoginWait long-polls a login until its code changes or it ends.
func (s *Server) handleLoginWait(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	version, _ := strconv.Atoi(r.URL.Query().Get("version"))
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logins[id]
	if l == nil {
		http.Error(w, "no such login", http.StatusNotFound)
		return
	}
	deadline := time.Now().Add(20 * time.Second)
	for !l.Done && l.Failed == "" && l.version == version && time.Now().Before(deadline) && r.Context().Err() == nil {
		s.cond.Wait()
	}
	writeJSON(w, map[string]any{"code": l.Code, "version": l.version, "done": l.Done, "account": l.Account, "failed": l.Failed})
}

// handleUser answers whether a remote user exists: on this network, every ID does.
func (s *Server) handleUser(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		http.Error(w, "no id", http.StatusBadRequest)
		return
	}
	writeJSON(w, map[string]string{"id": id, "name": id})
}
