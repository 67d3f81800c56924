// Package ircconn is Passerelle's IRC client connection layer: one Conn is one
// IRC connection (a Matrix user's puppet or a network's bot), built to run by
// the thousand in one process.
//
// It deliberately does not use irc-go's ircevent package: ircevent runs
// callbacks on its read goroutine (so a slow callback causes ping timeouts),
// has no outgoing flood control, reconnects at a fixed interval and keeps
// trying to reclaim the configured nick. Instead it is built on irc-go's
// lower-level pieces: ircmsg (parsing and serialising lines and tags),
// ircreader (line reading with a maximum line size) and ircutils (SASL
// response encoding). irc-go v0.6.0 has no casefolding helpers, so CASEMAPPING
// is implemented here (rfc1459, rfc1459-strict, ascii, and rfc7613 via
// golang.org/x/text/secure/precis).
//
// # Model
//
// Each Conn owns a network goroutine (dial, register, read, reconnect) and a
// handler goroutine. Every event is appended to an unbounded queue and the
// handler is called for each, in order, on the handler goroutine, so a slow
// handler never delays reading: PING is answered on the network goroutine.
//
// Registration sends PASS (if configured), CAP LS 302, NICK and USER at once,
// then requests the wanted capabilities, authenticates with SASL PLAIN if
// configured and offered, and ends capability negotiation. Registration is
// complete at 001; the Connected event is emitted at the end of the MOTD
// (376 or 422), by which time the 005 ISUPPORT burst is complete on every
// common server. As a fallback for servers that skip the MOTD, Connected is
// also emitted before the first non-numeric command (other than PING, PONG,
// NOTICE, CAP, AUTHENTICATE, NICK and ERROR) received after 001.
//
// Nick collisions during registration are resolved by trying nick_, nick__,
// then nick1, nick2, ... (a bounded number of attempts). After registration
// the Conn never tries to reclaim the configured nick.
//
// Outgoing lines passed to Send and SendMsg go through a per-connection token
// bucket; lines the Conn sends itself (registration, PONG, keepalive PING,
// QUIT) do not. Lines are never split: a line over the limit is an error.
//
// Raw lines are logged at trace level (PASS, OPER and AUTHENTICATE payloads
// redacted); connection lifecycle at debug level.
package ircconn

import (
	"errors"
	"time"

	"crypto/tls"
	"github.com/ergochat/irc-go/ircmsg"
	"github.com/rs/zerolog"
)

// Config configures a Conn. Only Addr and Nick are required.
type Config struct {
	// Addr is the server address, host:port.
	Addr string
	// Fallbacks are further servers of the same network, tried in turn after a failed
	// or lost connection (server rotation).
	Fallbacks []string
	// TLS enables TLS; TLSConfig (optional) is cloned and gets ServerName
	// from Addr when empty.
	TLS       bool
	TLSConfig *tls.Config
	// ServerPassword is sent with PASS when non-empty. It is never logged.
	ServerPassword string
	// Nick is the wanted nick; User and RealName default to Nick.
	Nick, User, RealName string
	// SASLUser and SASLPassword enable SASL PLAIN when both are set and the
	// server offers sasl. A SASL failure is Fatal. The password is never logged.
	SASLUser, SASLPassword string
	// Caps lists the IRCv3 capabilities requested when offered; nil means
	// DefaultCaps().
	Caps []string
	// MessagesPerSecond and Burst configure outgoing flood control for Send
	// and SendMsg (token bucket); defaults 2 and 5. A negative
	// MessagesPerSecond disables flood control.
	MessagesPerSecond float64
	Burst             int
	// ConnectLimiter, when set, is waited on before every connection
	// attempt. Share one across all connections of a bridge.
	ConnectLimiter *Limiter
	// MinBackoff and MaxBackoff bound the reconnect delay (exponential
	// backoff with full jitter); defaults 2s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how long the connection may be idle (nothing
	// received) before the client sends a PING; PingTimeout is how long it
	// may receive nothing before it is considered dead. Defaults 60s, 120s.
	PingInterval, PingTimeout time.Duration
	// SkipChannelText, when set, is asked about each PRIVMSG, NOTICE and TAGMSG to a
	// channel sent by someone else, on the reading goroutine and before the line is
	// parsed: true drops the line (no Message event). Connections that share their
	// channels with another one that bridges them (puppets beside the bot) use it to
	// spend almost nothing on lines they would throw away. It must be quick and must
	// not block; channel is only valid during the call.
	SkipChannelText func(channel []byte) bool
	// MaxQueued is how many received lines may wait for the handler (default 1000).
	// When that many wait, the connection stops reading until the handler catches up:
	// the socket's buffers fill and the server stops sending (TCP backpressure),
	// instead of lines piling up in memory.
	MaxQueued int
	// Log receives the Conn's logs.
	Log zerolog.Logger
}

// DefaultCaps returns the capabilities requested when Config.Caps is nil.
func DefaultCaps() []string {
	return []string{"server-time", "message-tags", "echo-message", "multi-prefix", "away-notify",
		"extended-join", "account-tag", "batch", "labeled-response", "sasl", "chghost", "cap-notify",
		"draft/relaymsg"}
}

// EventKind says what an Event reports.
type EventKind int

const (
	// Connected: registration finished (after 001 and the end of the MOTD);
	// Send works from now on. Event.Nick is our nick.
	Connected EventKind = iota + 1
	// Disconnected: the connection (or an attempt) ended. Unless Err wraps
	// ErrStopped, the Conn retries in RetryIn.
	Disconnected
	// Fatal: the Conn gave up and will not retry (banned, SASL failure, bad
	// server password, no usable nick, invalid config). Err says why.
	Fatal
	// Message: any line from the server not consumed by the Conn itself
	// (PING, our keepalive PONG, AUTHENTICATE, registration nick collisions
	// and our own NICK changes are consumed).
	Message
	// NickChanged: our own nick changed (collision resolution at
	// registration, or a NICK for us afterwards, then Msg is that line).
	// Event.Nick is the new nick.
	NickChanged
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case Connected:
		return "Connected"
	case Disconnected:
		return "Disconnected"
	case Fatal:
		return "Fatal"
	case Message:
		return "Message"
	case NickChanged:
		return "NickChanged"
	}
	return "EventKind(?)"
}

// Event is delivered to the handler given to New.
type Event struct {
	Kind EventKind
	// Msg is the line for Message events (and NICK-caused NickChanged).
	Msg ircmsg.Message
	// Err is set for Disconnected and Fatal.
	Err error
	// RetryIn is the delay before the next attempt, for Disconnected.
	RetryIn time.Duration
	// Nick is our nick when the event was produced.
	Nick string
}

// Errors reported in events or returned by Send. Fatal errors are ErrBanned,
// ErrSASLFailed, ErrBadPassword, ErrNickUnavailable and ErrInvalidConfig.
var (
	ErrNotConnected    = errors.New("ircconn: not connected")
	ErrStopped         = errors.New("ircconn: stopped")
	ErrLineTooLong     = errors.New("ircconn: line too long")
	ErrInvalidLine     = errors.New("ircconn: invalid line")
	ErrBanned          = errors.New("ircconn: banned from server")
	ErrThrottled       = errors.New("ircconn: throttled by server")
	ErrSASLFailed      = errors.New("ircconn: SASL authentication failed")
	ErrBadPassword     = errors.New("ircconn: server password rejected")
	ErrNickUnavailable = errors.New("ircconn: no usable nick")
	ErrInvalidConfig   = errors.New("ircconn: invalid config")
	ErrPingTimeout     = errors.New("ircconn: ping timeout")
	ErrRegistration    = errors.New("ircconn: registration timed out")
	ErrClosedByServer  = errors.New("ircconn: closed by server")
)

// isFatal reports whether err must stop reconnecting.
func isFatal(err error) bool {
	return errors.Is(err, ErrBanned) || errors.Is(err, ErrSASLFailed) || errors.Is(err, ErrBadPassword) ||
		errors.Is(err, ErrNickUnavailable) || errors.Is(err, ErrInvalidConfig)
}
