package bridge

// This file is the whole connector contract, in two levels: what a network must provide
// (Network per process, Session per login), what it may optionally provide (the
// <Capability>Network and <Capability>Session interfaces, found at run time with type
// assertions), what a plugin provides (Plugin and its <Capability>Plugin interfaces),
// and what the core offers back (Host, PluginHost). connectors/loopback is the worked
// example: read it first. Everything else in bridge/ is the core's own business.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Typed IDs. On the wire and in the database they are plain strings; in the contract
// their types keep a chat, a remote user, a remote message and a login from being
// passed for one another.
type (
	// ChatID identifies a remote chat within its connector ("libera/#go", a WhatsApp
	// JID).
	ChatID string
	// RemoteUserID identifies a remote user within its connector; the core builds the
	// ghost's Matrix ID around it.
	RemoteUserID string
	// RemoteMessageID identifies a remote message within its chat.
	RemoteMessageID string
	// LoginID identifies a login (an account on the network) within its connector.
	LoginID string
)

// NetworkInfo identifies a network connector.
type NetworkInfo struct {
	// Name is the config key and the command argument ("irc", "whatsapp").
	Name string
	// DisplayName is shown to users ("IRC", "WhatsApp").
	DisplayName string
	// ProtocolID is the `m.bridge` protocol id (e.g. "irc", "whatsapp").
	ProtocolID string
	// FilesAsLinks says the network gets Matrix files as links only (Media.PublicURL):
	// the core then never downloads them, and Media.Reader stays nil.
	FilesAsLinks bool
	// DropsWhenBehind says the network keeps no history and cuts off clients that stop
	// reading (IRC: a server drops a connection whose send queue overflows, losing
	// every chat on it). When one chat's queue is full, or it sends faster than
	// bridge.max_chat_rate, the core then drops that chat's further messages (and
	// reactions, typing…; never membership or chat state), counting them, instead of
	// holding up the connection; once the chat has caught up, its room is told how
	// many were dropped. Other networks are only slowed down (backpressure).
	DropsWhenBehind bool
}

// Network is the one interface every network connector implements: the process-level
// half of the contract. What a network can do beyond sending messages is said by the
// optional <Capability>Network and <Capability>Session interfaces below, found at run
// time with type assertions.
type Network interface {
	Info() NetworkInfo
	// Init is called once with the connector's own config block and the core's host
	// handle. It must not connect to the network yet.
	Init(ctx context.Context, host Host, cfg *yaml.Node) error
	// Start starts network-wide work (e.g. shared bot connections). Sessions for stored
	// logins are loaded by the core with LoadLogin afterwards.
	Start(ctx context.Context) error
	// Stop disconnects everything; called on shutdown.
	Stop(ctx context.Context)
	// LoginFlows lists the ways a user can log in; empty for connectors without logins.
	LoginFlows() []LoginFlow
	// StartLogin begins a login flow for a Matrix user. args are the words the user typed
	// after the flow name (e.g. a phone number).
	StartLogin(ctx context.Context, user id.UserID, flowID string, args []string) (LoginProcess, error)
	// LoadLogin turns a stored login back into a live session (not yet connected).
	LoadLogin(ctx context.Context, login *Login) (Session, error)
}

// LoginFlow is one way to log in ("qr", "phone", "password").
type LoginFlow struct {
	ID          string
	Name        string
	Description string
}

// LoginStepType is what a login step asks of the user.
type LoginStepType string

const (
	// StepInput asks the user to type something (a phone number, a nick, a password).
	StepInput LoginStepType = "input"
	// StepDisplay shows something (a QR payload or a code) and waits for the remote side.
	StepDisplay LoginStepType = "display"
	// StepDone means the login succeeded.
	StepDone LoginStepType = "done"
)

// DisplayKind says how the core renders a StepDisplay payload.
type DisplayKind string

const (
	// DisplayQR renders Data as a QR code image (m.image) and replaces it on refresh.
	DisplayQR DisplayKind = "qr"
	// DisplayCode shows Data as text (a pairing code).
	DisplayCode DisplayKind = "code"
)

// LoginStep is one state of a login step machine. A failed login is an error.
type LoginStep struct {
	Type         LoginStepType
	Instructions string
	// For StepInput: the name of the field and whether it is secret (the core then
	// redacts the user's message after reading it).
	InputName   string
	InputSecret bool
	// For StepDisplay.
	Display DisplayKind
	Data    string
	// For StepDone: the new login, persisted by the core, then loaded with LoadLogin.
	Login *NewLogin
}

// NewLogin is what a successful login flow produces.
type NewLogin struct {
	// ID is unique within the connector (e.g. "libera/alice", a WhatsApp JID).
	ID LoginID
	// RemoteName is shown to the user ("+33 6 12…", "alice on Libera").
	RemoteName string
	// Metadata is connector-private, stored as JSON. Secrets (passwords, keys) belong
	// here; the core never logs it and deletes it on logout.
	Metadata json.RawMessage
}

// LoginProcess is a running login flow. The core drives it from the management room.
type LoginProcess interface {
	// Start returns the first step.
	Start(ctx context.Context) (*LoginStep, error)
	// SubmitInput answers a StepInput step.
	SubmitInput(ctx context.Context, input string) (*LoginStep, error)
	// Wait blocks during a StepDisplay step until the next step: a refreshed display,
	// done, or an error (timeout, cancelled, rejected).
	Wait(ctx context.Context) (*LoginStep, error)
	// Cancel abandons the flow and frees its resources. The core also calls it after
	// StepDone, once the new session took over: it must not tear down what the
	// session now owns (a connection handed over).
	Cancel()
}

// Login is a stored login as the core keeps it.
type Login struct {
	Connector  string
	ID         LoginID
	UserMXID   id.UserID
	RemoteName string
	Metadata   json.RawMessage
	CreatedAt  time.Time
}

// SessionState is a session's connection state, as reported to the user.
type SessionState string

const (
	StateConnecting     SessionState = "connecting"
	StateConnected      SessionState = "connected"
	StateTransientError SessionState = "transient_disconnect"
	StateBadCredentials SessionState = "bad_credentials"
	StateLoggedOut      SessionState = "logged_out"
	StateDisconnected   SessionState = "disconnected"
)

// Session is one live logged-in account (or relay account) on the network.
type Session interface {
	// Connect starts connecting in the background; progress is reported with
	// Host.ReportState.
	Connect(ctx context.Context)
	// Disconnect closes the connection without forgetting the login.
	Disconnect()
	// Logout forgets the login on the remote side where that means something (unlink a
	// device). The core deletes its own records afterwards.
	Logout(ctx context.Context) error
	// SendMessage sends a Matrix message to the chat. It returns the remote IDs created
	// (several when the network splits a long message). When part of a message went
	// out before an error, it returns those IDs with the error: the core records them
	// and tells the sender instead of retrying (which would repeat them).
	SendMessage(ctx context.Context, msg *MatrixMessage) (*SendResult, error)
}

// SendResult is what the network assigned to a sent message.
type SendResult struct {
	RemoteIDs []RemoteMessageID
	Timestamp time.Time
}

// Optional Session capabilities: each embeds Session and is named for what it adds.
// A message, edit, reaction or deletion the session cannot carry gets a visible status
// back to its sender; typing, receipts, memberships and room names it cannot carry are
// dropped quietly (they are not the sender's words).

// EditingSession sends edits.
type EditingSession interface {
	Session
	// SendEdit may return a nil result when the edit made no new remote message.
	SendEdit(ctx context.Context, edit *MatrixEdit) (*SendResult, error)
}

// RedactingSession deletes messages (or reactions) on the network.
type RedactingSession interface {
	Session
	SendRedaction(ctx context.Context, r *MatrixRedaction) error
}

// ReactingSession sends reactions.
type ReactingSession interface {
	Session
	// SendReaction returns the reaction's remote ID, or "" when the network gives it
	// none (the core then keys it on the Matrix event).
	SendReaction(ctx context.Context, r *MatrixReaction) (remoteID RemoteMessageID, err error)
}

// TypingSession sends typing notifications.
type TypingSession interface {
	Session
	SendTyping(ctx context.Context, chat PortalKey, typing bool) error
}

// ReceiptSession sends read markers.
type ReceiptSession interface {
	Session
	SendReceipt(ctx context.Context, chat PortalKey, upTo RemoteMessageID) error
}

// MembershipSession mirrors Matrix membership changes (join, leave, kick) to the network.
type MembershipSession interface {
	Session
	SendMembership(ctx context.Context, m *MatrixMembership) error
}

// RoomMetaSession mirrors a room name or topic change.
type RoomMetaSession interface {
	Session
	SendRoomMeta(ctx context.Context, chat PortalKey, name, topic *string) error
}

// NativeRelaySession can show, per message, which Matrix user a relayed message is
// from (IRCv3 draft/relaymsg): for such a message the core leaves the relay format out
// and sets MatrixMessage.RelayNative. It is asked before every relayed send, where the
// session knows what its connection offers right now.
type NativeRelaySession interface {
	Session
	RelaysNatively(msg *MatrixMessage) bool
}

// ChatFilteringSession says which chats the session can reach (an IRC login only
// reaches its own network). Sessions without it reach every chat whose receiver is
// empty or equal to their login ID.
type ChatFilteringSession interface {
	Session
	CanReach(chat PortalKey) bool
}

// Optional Network capabilities: each embeds Network and is named for what it adds.

// ChatResolvingNetwork turns what a user typed into a chat and its info ("join",
// "plumb").
type ChatResolvingNetwork interface {
	Network
	ResolveChat(ctx context.Context, login *Login, args []string) (*ChatInfo, error)
}

// DMNetwork opens a direct chat with a remote user ("pm" command, or a Matrix user
// inviting a ghost to a new room).
type DMNetwork interface {
	Network
	DMChat(ctx context.Context, login *Login, remoteUser string) (*ChatInfo, error)
}

// AliasNetwork maps a room alias localpart, with the alias template's prefix and
// suffix stripped but otherwise as typed (the connector checks it), to a chat, so
// joining `#irc_libera_#go:example.org` works. Returning a nil ChatInfo and nil error
// means "no such chat".
type AliasNetwork interface {
	Network
	ChatForAlias(ctx context.Context, alias string) (*ChatInfo, error)
	// AliasFor returns the alias localpart remainder for a chat ("" for none).
	AliasFor(chat PortalKey) string
}

// GhostProfileNetwork answers the homeserver's user queries and fetches profiles.
type GhostProfileNetwork interface {
	Network
	// GhostInfo returns the profile of a remote user, or nil if they do not exist.
	GhostInfo(ctx context.Context, remoteID RemoteUserID) (*GhostInfo, error)
}

// GhostAvatarNetwork supplies a remote user's picture when their ghost is first made
// (events name senders but do not carry pictures). RemoteProfile events with
// Sender.Avatar update it later.
type GhostAvatarNetwork interface {
	Network
	GhostAvatar(ctx context.Context, remoteID RemoteUserID) *Media
}

// AutoLoginNetwork opens a login on demand for a Matrix user who has none
// (single-puppet IRC connects users when they first speak). It returns nil when not
// possible.
type AutoLoginNetwork interface {
	Network
	AutoLogin(ctx context.Context, user id.UserID, chat PortalKey) (*NewLogin, error)
}

// RelayingNetwork supplies a network-wide relay (an IRC network's bot connection) for
// Matrix users without a login of their own, in rooms that have no relay login set.
// Messages through it are relay-formatted like any relay.
type RelayingNetwork interface {
	Network
	RelaySession(ctx context.Context, chat PortalKey) Session
}

// PlumbCheckingNetwork validates a plumb request (network etiquette, channel consent).
type PlumbCheckingNetwork interface {
	Network
	CheckPlumb(ctx context.Context, chat PortalKey, user id.UserID) error
}

// Plugins. A plugin speaks no network of its own and claims no ghosts or aliases: it
// adds policy (the relay bot acts on the portals other connectors' logins get) through
// the PluginHost.

// PluginInfo identifies a plugin.
type PluginInfo struct {
	// Name is the config key ("relaybot").
	Name string
	// DisplayName is shown to users ("Relay bot").
	DisplayName string
}

// Plugin is the one interface every plugin implements; like networks, plugins add
// optional <Capability>Plugin interfaces.
type Plugin interface {
	Info() PluginInfo
	// Init is called once with the plugin's own config block.
	Init(ctx context.Context, host PluginHost, cfg *yaml.Node) error
	// Start starts the plugin's work, after every network started.
	Start(ctx context.Context) error
	// Stop ends it; called on shutdown.
	Stop(ctx context.Context)
}

// PortalWatchingPlugin is told about every portal room the core creates, whichever
// network it belongs to. A portal made just before a crash is told about at the next
// start, so the call may come twice for one room.
type PortalWatchingPlugin interface {
	Plugin
	PortalCreated(ctx context.Context, p *NewPortal)
}

// PortalFilteringPlugin may keep the core from creating a portal for a remote event (a
// relay account wants rooms for contacts who write, not for its backfilled or own
// chats). The event is then dropped.
type PortalFilteringPlugin interface {
	Plugin
	AllowPortal(ctx context.Context, p *NewPortal) bool
}

// CommandPlugin adds commands to the bridge bot. They run for users of level relay or
// above; anything stricter is the plugin's to check.
type CommandPlugin interface {
	Plugin
	Commands() []ConnectorCommand
}

// PortalTrigger says what made a portal.
type PortalTrigger string

const (
	// TriggerIncoming: someone on the network wrote (or acted) in the chat.
	TriggerIncoming PortalTrigger = "incoming"
	// TriggerOwn: the login's own account acted (sent from the phone).
	TriggerOwn PortalTrigger = "own"
	// TriggerBackfill: history the network sent after a login.
	TriggerBackfill PortalTrigger = "backfill"
	// TriggerMatrix: a Matrix user opened it (alias, join, pm, ghost invite).
	TriggerMatrix PortalTrigger = "matrix"
)

// NewPortal is a portal room the core creates (RoomID is empty when asking a
// PortalFilteringPlugin).
type NewPortal struct {
	Key    PortalKey
	RoomID id.RoomID
	Info   *ChatInfo
	// LoginOwner is the Matrix user whose login the chat belongs to (Key.Receiver), if
	// any.
	LoginOwner id.UserID
	Trigger    PortalTrigger
}

// ConnectorCommand is one command a plugin adds.
type ConnectorCommand struct {
	Name, Usage, Help string
	Fn                func(ctx context.Context, call *CommandCall) error
}

// CommandCall is one invocation of a plugin's command. An error made with
// NewUserError is shown as is; Reply sends a notice to the room.
type CommandCall struct {
	Sender id.UserID
	RoomID id.RoomID
	// IsAdmin is true for bridge admins.
	IsAdmin bool
	Args    []string
	Reply   func(ctx context.Context, text string)
}

// RelayOptions is a relay room's own policy, overriding bridge.relay_formats.
type RelayOptions struct {
	// Formats are text/template relay formats by kind (text, notice, emote, media,
	// edit, reaction) over RelayData.
	Formats map[string]string `json:"formats,omitempty"`
	// NoPrefixWhenAlone sends messages as written while only one Matrix user handles
	// the room (the relay account's owner and bridge users aside).
	NoPrefixWhenAlone bool `json:"no_prefix_when_alone,omitempty"`
	// ReactionsAsText renders reactions with the "reaction" format instead of dropping
	// them (a shared account cannot react for someone else).
	ReactionsAsText bool `json:"reactions_as_text,omitempty"`
}

// PluginHost is what the core offers a plugin: its logger and database, and room
// operations on linked rooms.
type PluginHost interface {
	// Database is the bridge's database, for the plugin's own tables (under their own
	// versioned migrations: see OpenTables).
	Database() *dbutil.Database
	// Log is the plugin's logger.
	Log() *zerolog.Logger
	// SetRoomRelay makes a linked room speak through a login, with its own options.
	SetRoomRelay(ctx context.Context, roomID id.RoomID, connector string, loginID LoginID, opts *RelayOptions) error
	// InviteUser invites a user and gives them a power level (negative: leave it).
	InviteUser(ctx context.Context, roomID id.RoomID, user id.UserID, powerLevel int) error
	// RestrictInvites lets only members at level or above invite people.
	RestrictInvites(ctx context.Context, roomID id.RoomID, level int) error
	// RemoveUser takes a user out of a room.
	RemoveUser(ctx context.Context, roomID id.RoomID, user id.UserID, reason string) error
	// RoomNotice sends a notice as the bridge bot; html may be empty.
	RoomNotice(ctx context.Context, roomID id.RoomID, text, html string) error
	// SendToRemote sends a text to a chat through a login, as the account itself.
	SendToRemote(ctx context.Context, chat PortalKey, loginID LoginID, text string) error
	// JoinRoom has the bot join a room by ID or alias.
	JoinRoom(ctx context.Context, roomIDOrAlias string) (id.RoomID, error)
	// JoinedUsers lists a room's joined Matrix users, without the bot and ghosts.
	JoinedUsers(ctx context.Context, roomID id.RoomID) ([]id.UserID, error)
	// CreateRoom creates a private room owned by the bot.
	CreateRoom(ctx context.Context, name, topic string, invite []id.UserID) (id.RoomID, error)
	// CloseRoom unlinks a room from its chat (a new message opens a new room) and has
	// the bot and the ghosts leave it; the room stays for its members.
	CloseRoom(ctx context.Context, roomID id.RoomID, reason string) error
	// LastActivity is when a message last crossed in a linked room.
	LastActivity(ctx context.Context, roomID id.RoomID) (time.Time, error)
	// Started is closed once the bridge has loaded its logins and resumed its work, so
	// what needs a session (a greeting) can wait for it.
	Started() <-chan struct{}
}

// ErrRoomNotLinked is returned by PluginHost.CloseRoom for a room no chat is linked to
// (already closed).
var ErrRoomNotLinked = errors.New("the room is not linked to a chat")

// PortalKey identifies one remote chat. Receiver is set for chats that only exist in
// one login's view (a WhatsApp DM); empty for chats shared by everyone (an IRC channel).
type PortalKey struct {
	Connector string  `json:"connector"`
	ChatID    ChatID  `json:"chat_id"`
	Receiver  LoginID `json:"receiver,omitempty"`
}

// String is a stable text form used for queue keys and logs.
func (k PortalKey) String() string {
	if k.Receiver == "" {
		return k.Connector + "|" + string(k.ChatID)
	}
	return k.Connector + "|" + string(k.ChatID) + "|" + string(k.Receiver)
}

// MarshalZerologObject lets a portal key be logged as one field.
func (k PortalKey) MarshalZerologObject(e *zerolog.Event) {
	e.Str("connector", k.Connector).Str("chat_id", string(k.ChatID))
	if k.Receiver != "" {
		e.Str("receiver", string(k.Receiver))
	}
}

// ChatInfo describes a remote chat for portal creation and updates.
type ChatInfo struct {
	Key   PortalKey
	Name  string
	Topic string
	// AvatarURL is an mxc:// URI or empty.
	AvatarURL id.ContentURI
	// Avatar is the chat's picture as bytes, for connectors without an mxc URI: the
	// core uploads it and uses it as AvatarURL.
	Avatar *Media `json:"avatar,omitempty"`
	// IsDM marks a one-to-one chat with OtherUser.
	IsDM      bool
	OtherUser RemoteUserID
	// Members are remote users to make ghosts for and join to the portal.
	Members []ChatMember
	// MembersComplete says Members is the chat's whole remote membership (an IRC NAMES
	// list after a (re)join): with a RemoteChatInfo, the core then makes every linked
	// room match it — missing ghosts join, ghosts no longer there leave — so rooms catch
	// up with what changed while the bridge was away.
	MembersComplete bool `json:"members_complete,omitempty"`
	// JoinedHistoryOnly makes the portal's history visible to members only from their
	// join (an IRC channel's traffic is not shown to someone before they are in it).
	JoinedHistoryOnly bool
}

// ChatMember is one remote participant.
type ChatMember struct {
	RemoteID   RemoteUserID
	Name       string
	PowerLevel *int
}

// GhostInfo is a remote user's profile. Account and RealName (an IRC services account,
// an IRC real name) are offered to the connector's displayname_template as
// {{.Account}} and {{.RealName}}; {{.}} is the name.
type GhostInfo struct {
	Name     string
	Account  string
	RealName string
	Avatar   *Media
}

// Sender identifies who did something on the network.
type Sender struct {
	// RemoteID of the remote user. Empty with IsFromMe means "the login itself".
	RemoteID RemoteUserID `json:"remote_id,omitempty"`
	// Name is the display name to keep the ghost's profile in sync (optional), with
	// the identity details GhostInfo describes when the network gives them.
	Name     string `json:"name,omitempty"`
	Account  string `json:"account,omitempty"`
	RealName string `json:"real_name,omitempty"`
	// Avatar is the sender's new picture, for RemoteProfile.
	Avatar *Media `json:"avatar,omitempty"`
	// IsFromMe marks the login's own actions (sent from the phone): the core sends them
	// as the user's double puppet when it can.
	IsFromMe bool `json:"is_from_me,omitempty"`
	// Login is the login that saw the event.
	Login LoginID `json:"login,omitempty"`
}

// RemoteEventType is what happened on the network.
type RemoteEventType string

const (
	RemoteMessage    RemoteEventType = "message"
	RemoteEdit       RemoteEventType = "edit"
	RemoteRedaction  RemoteEventType = "redaction"
	RemoteReaction   RemoteEventType = "reaction"
	RemoteUnreaction RemoteEventType = "unreaction"
	RemoteTyping     RemoteEventType = "typing"
	RemoteReceipt    RemoteEventType = "receipt"
	RemoteJoin       RemoteEventType = "join"
	RemoteLeave      RemoteEventType = "leave"
	RemoteKick       RemoteEventType = "kick"
	RemoteChatInfo   RemoteEventType = "chat_info"
	// RemotePowerLevel changes TargetUser's power (channel op → moderator).
	RemotePowerLevel RemoteEventType = "power_level"
	// RemotePresence sets the sender's presence: away ("unavailable") with Reason as the
	// status message, or back online when Reason is empty.
	RemotePresence RemoteEventType = "presence"
	RemoteProfile  RemoteEventType = "profile"
)

// RemoteEvent is one network event handed to the core. It is plain data (JSON) because
// the core stores it durably before the connector acknowledges it to the network.
type RemoteEvent struct {
	Type RemoteEventType `json:"type"`
	Chat PortalKey       `json:"chat"`
	// ID is the remote message ID (for messages, edits: the new message ID if any).
	ID        RemoteMessageID `json:"id,omitempty"`
	Sender    Sender          `json:"sender"`
	Timestamp time.Time       `json:"ts"`
	// TargetID is the remote message an edit, redaction, reaction or reply refers to.
	TargetID RemoteMessageID `json:"target_id,omitempty"`
	// Content for messages and edits. The connector converts formatting itself (the
	// core only forwards); mentioned remote users are listed in Content.Mentions and
	// become mentions of their ghosts.
	Content *MessageContent `json:"content,omitempty"`
	// Emoji for reactions.
	Emoji string `json:"emoji,omitempty"`
	// Target user for kicks; Reason for leaves and kicks.
	TargetUser RemoteUserID `json:"target_user,omitempty"`
	// TargetMXID is set instead of TargetUser when the target is a Matrix user (their
	// puppet was opped on IRC).
	TargetMXID id.UserID `json:"target_mxid,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	// ChatInfo for RemoteChatInfo (and to create the portal with the right name).
	ChatInfo *ChatInfo `json:"chat_info,omitempty"`
	// CreatePortal says a missing portal should be created for this event.
	CreatePortal bool `json:"create_portal,omitempty"`
	// Typing on/off for RemoteTyping.
	Typing bool `json:"typing,omitempty"`
	// PowerLevel for RemotePowerLevel.
	PowerLevel *int `json:"power_level,omitempty"`
	// ReplaceReactions marks a RemoteReaction on a network that allows one reaction per
	// person and message: the sender's earlier reactions to the target are removed.
	// A RemoteUnreaction with an empty Emoji removes all of them.
	ReplaceReactions bool `json:"replace_reactions,omitempty"`
	// Backfill marks history the network sent after a login (not live traffic).
	Backfill bool `json:"backfill,omitempty"`
	// Moderator marks a RemoteRedaction by someone who may remove others' messages (a
	// group admin, the account itself). Otherwise the core only lets senders remove
	// and edit their own messages.
	Moderator bool `json:"moderator,omitempty"`
}

// NewUserError makes an error whose text the core shows the Matrix user as is (why a
// message was refused, what to do), instead of a generic failure notice. The core does
// not retry it.
func NewUserError(format string, args ...any) error { return userErrorf(format, args...) }

// MessageContent is a message in a network-neutral form.
type MessageContent struct {
	MsgType       event.MessageType `json:"msgtype"`
	Body          string            `json:"body"`
	FormattedBody string            `json:"formatted_body,omitempty"`
	Media         *Media            `json:"media,omitempty"`
	// ReplyTo is the remote ID of the message replied to.
	ReplyTo RemoteMessageID `json:"reply_to,omitempty"`
	// Mentions are remote user IDs mentioned in the message.
	Mentions []RemoteUserID `json:"mentions,omitempty"`
	// MentionedMatrixUsers are Matrix users mentioned (remote→Matrix: someone on the
	// network named a Matrix user's puppet).
	MentionedMatrixUsers []id.UserID `json:"mentioned_matrix_users,omitempty"`
	// GeoURI is the location of an m.location message ("geo:48.85,2.29").
	GeoURI string `json:"geo_uri,omitempty"`
}

// MsgSticker is the MessageContent.MsgType of a sticker: the core sends it as an
// m.sticker event.
const MsgSticker event.MessageType = "m.sticker"

// Media is a file to bridge. For remote→Matrix, the bytes are in a spool file (Spool,
// written through Host.CreateMediaFile, so a large file is never held in memory) or, for
// small ones, in Data; the core keeps them on disk, not in its queue, until uploaded.
// For Matrix→remote, URL holds the mxc URI and Reader the downloaded file.
type Media struct {
	FileName string `json:"file_name,omitempty"`
	MimeType string `json:"mime_type,omitempty"`
	Size     int    `json:"size,omitempty"`
	Data     []byte `json:"data,omitempty"`
	// Spool names a file of the bridge's media spool (MediaFile.SpoolName); once the
	// event is queued the bridge owns the file and removes it when done.
	Spool string              `json:"spool,omitempty"`
	URL   id.ContentURIString `json:"url,omitempty"`
	// Reader (Matrix→remote) reads the file the core downloaded, decrypted and Size
	// bytes long, from its start; it is on disk, never whole in memory, and valid only
	// during the call that carries it. Nil for networks that get links.
	Reader io.ReadSeeker `json:"-"`
	// PublicURL (Matrix→remote) is a link anyone can open, served by the bridge when
	// appservice.public_address is set; networks without files send it instead.
	PublicURL string `json:"public_url,omitempty"`
	// Width, Height (pixels) and DurationMS describe images, videos and audio when the
	// network says; Voice marks a voice note.
	Width      int  `json:"width,omitempty"`
	Height     int  `json:"height,omitempty"`
	DurationMS int  `json:"duration_ms,omitempty"`
	Voice      bool `json:"voice,omitempty"`
}

// MatrixSender is the Matrix user behind an outgoing event, with what relay formats need.
type MatrixSender struct {
	MXID id.UserID
	// DisplayName is their name in the room, and Disambiguated adds the user ID when
	// another member shares it.
	DisplayName   string
	Disambiguated string
}

// MatrixMessage is a Matrix message to send to the network.
type MatrixMessage struct {
	Chat    PortalKey
	RoomID  id.RoomID
	EventID id.EventID
	// TxnID is stable for this Matrix event across retries and restarts; networks that
	// accept client message IDs use it to deduplicate.
	TxnID   string
	Sender  MatrixSender
	Content MessageContent
	// ReplyTo is the remote ID of the message replied to, if it is known, and
	// ReplyToSender the Matrix user (or ghost) who sent it, so networks without reply
	// threads can address them ("bob: …").
	ReplyTo       RemoteMessageID
	ReplyToSender id.UserID
	// Relayed is set when the message goes through another user's account. Content then
	// carries the relay format's rendering (the sender's name in it), rendered once by
	// the core — unless RelayNative: the session said (NativeRelaySession) it names the
	// sender itself for this message, so Content is what the user wrote, and the
	// session must name the sender or fail the send (never send it unattributed).
	Relayed     bool
	RelayNative bool
}

// MatrixEdit is a Matrix edit to send.
type MatrixEdit struct {
	MatrixMessage
	// TargetIDs are the remote IDs of the edited message.
	TargetIDs []RemoteMessageID
}

// MatrixRedaction is a Matrix redaction to send.
type MatrixRedaction struct {
	Chat      PortalKey
	RoomID    id.RoomID
	EventID   id.EventID
	Sender    MatrixSender
	TargetIDs []RemoteMessageID
	// IsReaction marks the removal of a reaction; Emoji is then set.
	IsReaction bool
	Emoji      string
	// ReactionTarget is the reacted-to message's remote ID when IsReaction.
	ReactionTarget RemoteMessageID
}

// MatrixReaction is a Matrix reaction to send.
type MatrixReaction struct {
	Chat     PortalKey
	RoomID   id.RoomID
	EventID  id.EventID
	TxnID    string
	Sender   MatrixSender
	TargetID RemoteMessageID
	// TargetSender is the Matrix user (or ghost) who sent the reacted-to message.
	TargetSender id.UserID
	Emoji        string
}

// MatrixMembership is a membership change in a bridged room.
type MatrixMembership struct {
	Chat   PortalKey
	RoomID id.RoomID
	Sender MatrixSender
	Target id.UserID
	// TargetRemote is the remote ID when Target is one of our ghosts.
	TargetRemote RemoteUserID
	Membership   event.Membership
	Reason       string
}

// Host is what the core offers a connector.
type Host interface {
	// QueueRemoteEvent stores the event durably and queues it for its portal: the one
	// call a connector makes for everything it receives. It retries storage failures
	// itself until it succeeds or ctx ends, so a connector never loops around it. When
	// it returns nil, the connector may acknowledge the event to the network; an error
	// means it was not stored (ctx ended, or the event is malformed) and must not be
	// acknowledged. File bytes in the event go to the media spool, not the queue; the
	// spool files it names belong to the bridge from the call on, stored or not.
	QueueRemoteEvent(ctx context.Context, evt *RemoteEvent) error
	// ReportState records and reports a session's state to its user.
	ReportState(ctx context.Context, loginID LoginID, state SessionState, message string)
	// Notify sends a notice to a user's management room.
	Notify(ctx context.Context, user id.UserID, message string)
	// NotifyAdmins sends a notice to the bridge admins named in the permissions (for
	// problems only they can fix, like an outdated bridge), and logs it at error level.
	NotifyAdmins(ctx context.Context, message string)
	// Database is the bridge's database, for the connector's own tables (under their
	// own versioned migrations: see OpenTables) and stores such as whatsmeow's sqlstore.
	Database() *dbutil.Database
	// Log is the connector's logger.
	Log() *zerolog.Logger
	// GhostMXID is the Matrix ID of a remote user's ghost.
	GhostMXID(remoteID RemoteUserID) id.UserID
	// ParseGhostMXID returns the remote ID behind a ghost MXID of this connector.
	ParseGhostMXID(mxid id.UserID) (remoteID RemoteUserID, ok bool)
	// Logins lists stored logins of this connector.
	Logins(ctx context.Context) ([]*Login, error)
	// LinkedChats lists this connector's chats that have a Matrix room (portal or
	// plumbed). A connector that must be present in a chat to receive its traffic (an
	// IRC bot in a channel) rejoins them at start: the database, not the config, is
	// the record of what is bridged.
	LinkedChats(ctx context.Context) ([]PortalKey, error)
	// PublicTextLink stores a long text as a file and returns a link anyone can open
	// (for networks that take pastes instead of long messages); "" when the bridge has
	// no appservice.public_address.
	PublicTextLink(ctx context.Context, text, fileName string) (string, error)
	// UpdateLoginMetadata persists a login's connector metadata.
	UpdateLoginMetadata(ctx context.Context, loginID LoginID, metadata json.RawMessage) error
	// CreateMediaFile opens a new file in the bridge's media spool that refuses to grow
	// past limit bytes (ErrMediaTooLarge), for a received file to be streamed into
	// rather than held in memory. Queue it by naming it in Media.Spool, or Discard it.
	CreateMediaFile(limit int64) (*MediaFile, error)
}
