// Package bridge is Passerelle's core: the appservice transaction stream, portals and
// plumbed rooms, ghosts, logins, relay, commands and permissions. Networks and plugins
// plug in through the contract in connector.go; connectors/loopback is the worked
// example of a network, docs/connectors.md the guide.
//
// # Files
//
// Files are named for the part of the core they belong to, so a listing reads in the
// order an event travels:
//
//	connector.go      the contract (Network, Session, their capabilities; Plugin; Host)
//	bridge.go         lifecycle; errors.go, util.go, retention.go beside it
//	intake_*.go       homeserver → durable queue: HTTP, loop guard, dispatch; the
//	                  queue itself (lanes, retries) is the sub-package bridge/queue
//	tonetwork_*.go    Matrix → network: events, members, relay, media links
//	tomatrix_*.go     network → Matrix: remote events, per-room handlers, the send seam
//	rooms_*.go        portals and plumbed rooms
//	people_*.go       ghosts, logins and login flows, double puppets, permissions
//	commands*.go      the bot's commands
//	host_*.go         what networks (Host) and plugins (PluginHost) get from the core;
//	                  tables.go versions their own tables (OpenTables)
//
// # Matrix → network, hop by hop
//
//  1. intake_http.go putTransaction: the homeserver PUTs a transaction; hs_token is
//     checked, each event is deduplicated by ID and stored in event_queue (one SQL
//     transaction) before the 200 answer.
//  2. bridge/queue: the item joins its room's lane (key "matrix:<room>");
//     lanes run concurrently, each in order, retried with backoff.
//  3. intake_dispatch.go handleQueueItem: the item is decoded and goes to
//     handleMatrixEvent.
//  4. tonetwork_events.go handleMatrixEvent: the loop guard (intake_loops.go) drops our
//     own echoes; then commands (commands.go) or, in a bridged
//     room, handleMatrixMessage / Edit / Reaction / Redaction / RoomMeta / Typing /
//     Receipt; tonetwork_members.go for memberships.
//  5. people_login.go senderSession: the route out — the user's own login, one opened
//     on demand, or the room's relay (tonetwork_relay.go renders the relayed text).
//  6. The connector's Session (or an optional <Capability>Session) sends it; the remote
//     IDs it returns are recorded in the message map (recordSent).
//
// # Network → Matrix, hop by hop
//
//  1. A connector calls Host.QueueRemoteEvent (host_network.go): the event is stored in
//     event_queue under its chat's lane ("remote:<chat>"), retried until stored; only
//     then may the connector acknowledge it to its network.
//  2. bridge/queue runs the lane in order; intake_dispatch.go hands the item to
//     handleRemoteItem.
//  3. tomatrix_remote.go handleRemoteItem: finds the chat's linked rooms (rooms_portal.go
//     linkedRooms creates the portal when the event asks), applies chat info and member
//     sync (tomatrix_membersync.go), and picks who speaks (ghost, double puppet, bot).
//  4. tomatrix_apply.go: one handler per event kind applies it to each linked room.
//  5. tomatrix_send.go sendEvent: every message the bridge posts leaves here, with a
//     transaction ID derived from the remote event, so a retry never posts twice.
package bridge
