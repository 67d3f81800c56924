package config

// Example returns a complete, commented example config. It loads as it is (with
// http://localhost:8008 and example.org as the homeserver); `passerelle
// generate-registration` fills in the two empty tokens.
func Example() string { return exampleConfig }

const exampleConfig = `# Passerelle configuration.
# Generate the appservice registration from this file with
#   passerelle generate-registration -c config.yaml -o registration.yaml
# then list registration.yaml in the homeserver's app_service_config_files.

# The homeserver the bridge belongs to.
homeserver:
  # Client-server API URL the bridge uses to reach the homeserver.
  address: http://localhost:8008
  # The server name: the part after the colon in user IDs (@alice:example.org).
  domain: example.org

# The bridge's side of the appservice link.
appservice:
  # URL the homeserver uses to reach the bridge (written into the registration).
  address: http://localhost:29300
  # host:port the bridge's HTTP server listens on. Keep it on loopback or a private
  # network: only the homeserver needs to reach it.
  listen: 127.0.0.1:29300
  # Public URL of the listener above (through a reverse proxy), used for links to
  # Matrix media that people on other networks can open (IRC users get a link
  # instead of the file). Only /_passerelle/media/ needs to be exposed. Empty: no links.
  public_address: ""
  # Registration ID; must be unique among the homeserver's appservices.
  id: passerelle
  # The bridge bot, which users talk to in their management room.
  bot:
    # Localpart of the bot's user ID (@passerelle:example.org).
    username: passerelle
    # Display name and avatar (an mxc:// URI, may be empty) of the bot.
    displayname: Passerelle bridge bot
    avatar: ""
  # Tokens shared with the homeserver. Leave them empty: generate-registration
  # generates them and writes them back here. Keep this file private (mode 0600).
  as_token: ""
  hs_token: ""
  # Largest transaction body accepted from the homeserver, in bytes (16 MiB).
  max_body_bytes: 16777216
  # Media links (appservice.public_address) served at once; more get 503 for a while.
  max_media_downloads: 16

# Where the bridge keeps its state.
database:
  # sqlite (embedded, the default) or postgres.
  type: sqlite
  # sqlite: a file path, relative paths are beside this config file.
  # postgres: a connection string, e.g. postgres://user:password@localhost/passerelle?sslmode=disable
  uri: passerelle.db
  # Maximum open connections (0 means the driver's default).
  max_open_conns: 0

# Behaviour shared by every connector.
bridge:
  # Prefix of bot commands in ordinary rooms (management rooms need no prefix).
  command_prefix: "!pass"
  # How long message mappings (used for edits, replies, redactions, reactions) are
  # kept: a number followed by d (days), h, m or s.
  retention: 30d
  # Queued, unprocessed Matrix events above which new transactions are refused; the
  # homeserver retries them later, nothing is dropped.
  max_queue: 10000
  # Network events of one chat that may wait; beyond it the bridge stops reading from
  # that network connection (backpressure) until they drain. Also what one Matrix room
  # may have waiting for its network: past it, what its members say is dropped and the
  # room told how many, so one busy room never fills max_queue for all.
  max_queue_per_chat: 1000
  # On networks without history that cut off slow readers (IRC), a chat that sends more
  # than this many messages a second (bursts of five seconds' worth), or that already
  # has max_queue_per_chat waiting, has the rest dropped and counted (its room is told
  # how many) instead of stalling the connection every chat of the network shares.
  max_chat_rate: 20
  # How long an event that keeps failing is retried before its sender is told it was
  # not bridged. Outages (database or homeserver away) are waited out and not counted.
  retry_window: 90m
  # Largest Matrix file fetched for a network that takes files (WhatsApp); networks
  # that get links (IRC) never fetch them. Larger files are refused with a notice.
  max_file_bytes: 52428800
  # How long fetching one such file may take; one not read whole by then (an upload
  # that never finishes) is refused with a notice.
  file_timeout: 5m
  # What traffic from a network may make the bridge create on Matrix, per hour (0: no
  # limit). New direct-chat rooms past the first two limits are not opened (the user is
  # told); a chat whose traffic registers new accounts past ghosts_per_chat slows down
  # instead (member lists of joined channels do not count); profile lookups from the
  # homeserver past ghost_lookups are answered "not found".
  limits:
    dm_rooms_per_sender: 3
    dm_rooms_per_login: 30
    ghosts_per_chat: 300
    ghost_lookups: 600
    # Unused ghosts (no message, in no room) and direct-chat rooms nobody is in any
    # more are removed after this long (default: the retention period; 0: never).
    cleanup_after: 30d
  # Files received from networks wait here, on disk, until they are uploaded to Matrix
  # (never in memory or in the event queue). Relative to the working directory.
  spool_dir: media-spool
  # End-to-end encryption: the bot gets a device of its own (appservice login), reads
  # encrypted rooms and encrypts what it sends into them. With allow: false encrypted
  # rooms get one notice and are not bridged; require: true refuses to start when the
  # homeserver offers no way to get a device.
  encryption:
    allow: true
    default: true                  # new portals (and DM portals) are created encrypted
    require: false
    key_wait: 2m                   # how long a message whose room key is late waits for it
  # Go text/template formats used when a message is relayed through a shared account.
  # Fields: .Sender, .Message, .FileName, .Caption.
  relay_formats:
    text: "{{.Sender}}: {{.Message}}"
    notice: "{{.Sender}}: {{.Message}}"
    emote: "* {{.Sender}} {{.Message}}"
    media: "{{.Sender}} sent {{.FileName}}{{if .Caption}}: {{.Caption}}{{end}}"
    edit: "{{.Sender}} (edit): {{.Message}}"
  # Bridge messages sent by other bridges' ghosts as if they were ordinary users.
  # Off by default to avoid loops between bridges.
  bridge_other_bridges: false
  # Regular expressions of user IDs that belong to other bridges.
  other_bridge_patterns:
    - "^@telegram_.*:example\\.org$"

# Who may use the bridge. Keys are a user ID, a server name or * (everyone);
# levels are none < relay < user < admin. The most specific match wins.
permissions:
  "example.org": user
  "@admin:example.org": admin

# Connectors: one block per network. A present block is enabled unless it says
# enabled: false. Every block accepts:
#   enabled: true or false
#   username_template: ghost localparts; {{.}} (exactly once) is the remote ID
#   displayname_template: ghost display names; {{.}} is the remote name
#   alias_template: portal alias localparts; {{.}} (exactly once) is the remote chat
# The other keys of a block belong to the connector (see its documentation).
#
# connectors:
#   irc:
#     enabled: true
#     username_template: "irc_{{.}}"
#     displayname_template: "{{.}} (IRC)"
#     alias_template: "irc_{{.}}"
#     networks:                      # every key is described in README.md, "IRC"
#       - name: libera
#         address: irc.libera.chat:6697
#         tls: true
#         bot_nick: mybridge
#         channels: ["#my-project"]
#   whatsapp:
#     enabled: true
#     username_template: "whatsapp_{{.}}"
#     displayname_template: "{{.}} (WhatsApp)"
#     history_count: 50              # recent messages per chat bridged at first login
#     bridge_status_broadcast: false # status updates (stories) as a room
#     max_media_bytes: 67108864      # larger files become a notice
#     contact_names: false           # ghosts named from your address book (single-user bridges)
#     sender_retention: 30d          # who sent which message, kept for reactions and receipts
#   relaybot:                        # every key is described in README.md, "Relay bot"
#     enabled: false
#     accounts:
#       - name: support
#         network: irc               # the connector of the shared login
#         owner: "@support:example.org"
#         admins: ["@boss:example.org"]
#         assignees: ["@alice:example.org"]
#         greeting: "Hello! Someone from our team will answer shortly."

# Logging.
logging:
  # trace, debug, info, warn or error. Message bodies and tokens are never logged at
  # info or above.
  level: info
  # console (human-readable) or json.
  format: console

# The operator's diagnostics listener, separate from the appservice listener. Keep it
# on a private address: profiles show memory contents.
metrics:
  listen: ""         # e.g. 127.0.0.1:29301; empty: no listener. Serves /metrics (Prometheus)
  pprof: false       # Go profiler under /debug/pprof/, statement counts under /debug/queries

# Double puppeting: sending a user's own remote actions as their real Matrix account.
# Map a homeserver's server name to "as_token:<token>", the as_token of a second
# registration whose non-exclusive user namespace covers that server's users.
double_puppet:
  secrets: {}
  # secrets:
  #   example.org: "as_token:replace-with-the-double-puppet-as-token"
`
