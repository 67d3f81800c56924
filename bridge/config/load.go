package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults applied by Load to keys that are absent (or, for strings, empty).
const (
	DefaultCommandPrefix     = "!pass"
	DefaultRetention         = Duration(30 * day)
	DefaultMaxQueue          = 10000
	DefaultRetryWindow       = Duration(90 * time.Minute)
	DefaultMaxQueuePerChat   = 1000
	DefaultMaxChatRate       = 20.0
	DefaultMaxFileBytes      = 50 << 20
	DefaultFileTimeout       = Duration(5 * time.Minute)
	DefaultSpoolDir          = "media-spool"
	DefaultDMRoomsPerSender  = 3
	DefaultDMRoomsPerLogin   = 30
	DefaultGhostsPerChat     = 300
	DefaultGhostLookups      = 600
	DefaultMaxMediaDownloads = 16
	DefaultKeyWait           = Duration(2 * time.Minute)
	DefaultMaxBodyBytes      = 16 << 20
	DefaultAppServiceID      = "passerelle"
	DefaultBotUsername       = "passerelle"
	DefaultBotDisplay        = "Passerelle bridge bot"
	DefaultDatabaseType      = "sqlite"
	DefaultDatabaseURI       = "passerelle.db"
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "console"
)

// Permission levels, lowest first.
const (
	LevelNone  = "none"
	LevelRelay = "relay"
	LevelUser  = "user"
	LevelAdmin = "admin"
)

// DefaultRelayFormats returns a fresh copy of the relay formats used for every message
// type the config does not set.
func DefaultRelayFormats() map[string]string {
	return map[string]string{
		"text":   "{{.Sender}}: {{.Message}}",
		"notice": "{{.Sender}}: {{.Message}}",
		"emote":  "* {{.Sender}} {{.Message}}",
		"media":  "{{.Sender}} sent {{.FileName}}{{if .Caption}}: {{.Caption}}{{end}}",
		"edit":   "{{.Sender}} (edit): {{.Message}}",
	}
}

var (
	localpartRe     = regexp.MustCompile(`^[a-z0-9._=/+-]+$`)
	connectorNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	plainKeyRe      = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	typeErrLineRe   = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// Load reads, strictly decodes, defaults and validates the config file at path. Every
// error is one line of the form "<path>: <key>: <problem>".
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: cannot read: %w", path, err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.Path = path
	return cfg, nil
}

// Parse decodes, defaults and validates a config held in memory. Config.Path is left
// empty, so a relative SQLite path is relative to the working directory.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	doc := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		doc = root.Content[0]
	}
	if errs := checkShape("", doc, reflect.TypeFor[Config](), doc.Line); len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}

	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, translateDecodeError(doc, err)
	}
	cfg.applyDefaults(doc)
	if errs := cfg.validate(); len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return cfg, nil
}

// applyDefaults fills in absent keys. doc is the decoded document, used to tell an
// absent number from an explicit zero (which validate then rejects).
func (c *Config) applyDefaults(doc *yaml.Node) {
	setStr := func(p *string, def string) {
		if *p == "" {
			*p = def
		}
	}
	setStr(&c.Bridge.CommandPrefix, DefaultCommandPrefix)
	setStr(&c.AppService.ID, DefaultAppServiceID)
	setStr(&c.AppService.Bot.Username, DefaultBotUsername)
	setStr(&c.AppService.Bot.Displayname, DefaultBotDisplay)
	setStr(&c.Database.Type, DefaultDatabaseType)
	setStr(&c.Logging.Level, DefaultLogLevel)
	setStr(&c.Logging.Format, DefaultLogFormat)
	setStr(&c.Bridge.SpoolDir, DefaultSpoolDir)
	if c.Database.Type == DefaultDatabaseType {
		setStr(&c.Database.URI, DefaultDatabaseURI)
	}
	if !present(doc, "bridge", "retention") {
		c.Bridge.Retention = DefaultRetention
	}
	if !present(doc, "bridge", "max_queue") {
		c.Bridge.MaxQueue = DefaultMaxQueue
	}
	if !present(doc, "bridge", "retry_window") {
		c.Bridge.RetryWindow = DefaultRetryWindow
	}
	if !present(doc, "bridge", "max_queue_per_chat") {
		c.Bridge.MaxQueuePerChat = DefaultMaxQueuePerChat
	}
	if !present(doc, "bridge", "max_chat_rate") {
		c.Bridge.MaxChatRate = DefaultMaxChatRate
	}
	if !present(doc, "bridge", "max_file_bytes") {
		c.Bridge.MaxFileBytes = DefaultMaxFileBytes
	}
	if !present(doc, "bridge", "file_timeout") {
		c.Bridge.FileTimeout = DefaultFileTimeout
	}
	limits := []struct {
		key string
		p   *int
		def int
	}{
		{"dm_rooms_per_sender", &c.Bridge.Limits.DMRoomsPerSender, DefaultDMRoomsPerSender},
		{"dm_rooms_per_login", &c.Bridge.Limits.DMRoomsPerLogin, DefaultDMRoomsPerLogin},
		{"ghosts_per_chat", &c.Bridge.Limits.GhostsPerChat, DefaultGhostsPerChat},
		{"ghost_lookups", &c.Bridge.Limits.GhostLookups, DefaultGhostLookups},
	}
	for _, l := range limits {
		if !present(doc, "bridge", "limits", l.key) {
			*l.p = l.def
		}
	}
	if !present(doc, "bridge", "limits", "cleanup_after") {
		c.Bridge.Limits.CleanupAfter = c.Bridge.Retention
	}
	if !present(doc, "appservice", "max_media_downloads") {
		c.AppService.MaxMediaDownloads = DefaultMaxMediaDownloads
	}
	if !present(doc, "bridge", "encryption", "allow") {
		c.Bridge.Encryption.Allow = true
	}
	if !present(doc, "bridge", "encryption", "default") {
		c.Bridge.Encryption.Default = true
	}
	if !present(doc, "bridge", "encryption", "key_wait") {
		c.Bridge.Encryption.KeyWait = DefaultKeyWait
	}
	if !present(doc, "appservice", "max_body_bytes") {
		c.AppService.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if len(c.Permissions) == 0 && c.Homeserver.Domain != "" {
		c.Permissions = map[string]string{c.Homeserver.Domain: LevelUser}
	}
	if c.Bridge.RelayFormats == nil {
		c.Bridge.RelayFormats = map[string]string{}
	}
	for k, v := range DefaultRelayFormats() {
		if c.Bridge.RelayFormats[k] == "" {
			c.Bridge.RelayFormats[k] = v
		}
	}
}

// validate returns one message per problem, each starting with the key.
func (c *Config) validate() []string {
	var errs []string
	add := func(key, format string, args ...any) {
		errs = append(errs, key+": "+fmt.Sprintf(format, args...))
	}
	required := []struct{ key, val string }{
		{"homeserver.address", c.Homeserver.Address},
		{"homeserver.domain", c.Homeserver.Domain},
		{"appservice.address", c.AppService.Address},
		{"appservice.listen", c.AppService.Listen},
	}
	for _, r := range required {
		if strings.TrimSpace(r.val) == "" {
			add(r.key, "missing")
		}
	}
	for _, u := range []struct{ key, val string }{
		{"homeserver.address", c.Homeserver.Address},
		{"appservice.address", c.AppService.Address},
		{"appservice.public_address", c.AppService.PublicAddress},
	} {
		if u.val == "" {
			continue
		}
		parsed, err := url.Parse(u.val)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			add(u.key, "want an http:// or https:// URL, got %q", u.val)
		}
	}
	if d := c.Homeserver.Domain; d != "" && (strings.ContainsAny(d, "/@#! \t") || (strings.Contains(d, ":") && !isHostPort(d))) {
		add("homeserver.domain", "want a server name like example.org, got %q", d)
	}
	if l := c.AppService.Listen; l != "" && !isHostPort(l) {
		add("appservice.listen", "want host:port such as 127.0.0.1:29300, got %q", l)
	}
	if l := c.Metrics.Listen; l != "" && !isHostPort(l) {
		add("metrics.listen", "want host:port such as 127.0.0.1:29301, got %q", l)
	} else if l != "" && l == c.AppService.Listen {
		add("metrics.listen", "must differ from appservice.listen")
	}
	if c.Metrics.Pprof && c.Metrics.Listen == "" {
		add("metrics.pprof", "needs metrics.listen")
	}
	if !localpartRe.MatchString(c.AppService.Bot.Username) {
		add("appservice.bot.username", "%q is not a valid Matrix localpart (use a-z, 0-9 and ._=/+-)", c.AppService.Bot.Username)
	}
	for _, p := range []struct {
		key      string
		positive bool
	}{
		{"appservice.max_body_bytes", c.AppService.MaxBodyBytes > 0},
		{"appservice.max_media_downloads", c.AppService.MaxMediaDownloads > 0},
		{"bridge.retention", c.Bridge.Retention > 0},
		{"bridge.max_queue", c.Bridge.MaxQueue > 0},
		{"bridge.retry_window", c.Bridge.RetryWindow > 0},
		{"bridge.max_queue_per_chat", c.Bridge.MaxQueuePerChat > 0},
		{"bridge.max_chat_rate", c.Bridge.MaxChatRate > 0},
		{"bridge.max_file_bytes", c.Bridge.MaxFileBytes > 0},
		{"bridge.file_timeout", c.Bridge.FileTimeout > 0},
	} {
		if !p.positive {
			add(p.key, "must be greater than 0")
		}
	}
	lim := c.Bridge.Limits
	for key, v := range map[string]int{"dm_rooms_per_sender": lim.DMRoomsPerSender, "dm_rooms_per_login": lim.DMRoomsPerLogin,
		"ghosts_per_chat": lim.GhostsPerChat, "ghost_lookups": lim.GhostLookups} {
		if v < 0 {
			add("bridge.limits."+key, "must be 0 (no limit) or a number per hour, got %d", v)
		}
	}
	if lim.CleanupAfter < 0 {
		add("bridge.limits.cleanup_after", "must be a duration such as 30d (0 turns the cleanup off)")
	}
	if c.Bridge.Encryption.KeyWait <= 0 {
		add("bridge.encryption.key_wait", "must be greater than 0 (a duration such as 2m)")
	}
	switch c.Database.Type {
	case "sqlite", "postgres":
		if c.Database.URI == "" {
			add("database.uri", "missing")
		}
	default:
		add("database.type", "unknown type %q (want sqlite or postgres)", c.Database.Type)
	}
	if c.Database.MaxOpenConns < 0 {
		add("database.max_open_conns", "must not be negative")
	}
	errs = append(errs, c.validateNamed()...)
	return errs
}

// validateNamed checks the keyed and listed entries: relay formats, other bridges'
// patterns, permissions, double-puppet secrets, logging and connector blocks.
func (c *Config) validateNamed() []string {
	var errs []string
	add := func(key, format string, args ...any) {
		errs = append(errs, key+": "+fmt.Sprintf(format, args...))
	}
	for _, k := range sortedKeys(c.Bridge.RelayFormats) {
		key := "bridge.relay_formats." + k
		if _, ok := DefaultRelayFormats()[k]; !ok {
			add(key, "unknown message type (want text, notice, emote, media or edit)")
			continue
		}
		if _, err := template.New(k).Parse(c.Bridge.RelayFormats[k]); err != nil {
			add(key, "bad template: %s", templateErr(err))
		}
	}
	for i, p := range c.Bridge.OtherBridgePatterns {
		if _, err := regexp.Compile(p); err != nil {
			add(fmt.Sprintf("bridge.other_bridge_patterns[%d]", i), "bad regular expression: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
	}
	for _, k := range sortedKeys(c.Permissions) {
		key := "permissions." + fmtKey(k)
		if strings.TrimSpace(k) == "" {
			add("permissions", "empty key (want a user ID, a server name or *)")
			continue
		}
		switch c.Permissions[k] {
		case LevelNone, LevelRelay, LevelUser, LevelAdmin:
		default:
			add(key, "unknown level %q (want none, relay, user or admin)", c.Permissions[k])
		}
	}
	for _, k := range sortedKeys(c.DoublePuppet.Secrets) {
		v := c.DoublePuppet.Secrets[k]
		if tok, ok := strings.CutPrefix(v, "as_token:"); !ok || tok == "" {
			add("double_puppet.secrets."+fmtKey(k), `want "as_token:<token>"`)
		}
	}
	switch c.Logging.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		add("logging.level", "unknown level %q (want trace, debug, info, warn or error)", c.Logging.Level)
	}
	switch c.Logging.Format {
	case "console", "json":
	default:
		add("logging.format", "unknown format %q (want console or json)", c.Logging.Format)
	}
	for _, name := range sortedKeys(c.Connectors) {
		if !connectorNameRe.MatchString(name) {
			add("connectors."+fmtKey(name), "bad connector name (use lower-case letters, digits and _)")
			continue
		}
		if _, err := c.ConnectorCommon(name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	return errs
}

// EnabledConnectors returns the sorted names of the connectors whose block is present
// and does not say enabled: false.
func (c *Config) EnabledConnectors() ([]string, error) {
	var names []string
	for _, name := range sortedKeys(c.Connectors) {
		cc, err := c.ConnectorCommon(name)
		if err != nil {
			return nil, err
		}
		if cc.Enabled == nil || *cc.Enabled {
			names = append(names, name)
		}
	}
	return names, nil
}

// ConnectorCommon decodes the keys shared by every connector block (enabled and the
// three templates) from the block named name, applies their defaults and validates
// them. Other keys in the block are left to the connector.
func (c *Config) ConnectorCommon(name string) (ConnectorCommon, error) {
	cc := ConnectorCommon{}
	prefix := "connectors." + fmtKey(name)
	n, ok := c.Connectors[name]
	if !ok {
		return cc, fmt.Errorf("%s: not configured", prefix)
	}
	node := &n
	for node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	switch {
	case isNull(node):
	case node.Kind == yaml.MappingNode:
		fields := yamlFields(reflect.TypeFor[ConnectorCommon]())
		var errs []string
		for i := 0; i+1 < len(node.Content); i += 2 {
			if ft, ok := fields[node.Content[i].Value]; ok {
				errs = append(errs, checkShape(prefix+"."+node.Content[i].Value, node.Content[i+1], ft, node.Content[i].Line)...)
			}
		}
		if len(errs) > 0 {
			return cc, errors.New(strings.Join(errs, "; "))
		}
		if err := node.Decode(&cc); err != nil {
			return cc, fmt.Errorf("%s: %w", prefix, err)
		}
	default:
		return cc, fmt.Errorf("%s: expected a mapping, got %s (line %d)", prefix, describeNode(node), node.Line)
	}
	if cc.UsernameTemplate == "" {
		cc.UsernameTemplate = name + "_{{.}}"
	}
	if cc.AliasTemplate == "" {
		cc.AliasTemplate = name + "_{{.}}"
	}
	if cc.DisplaynameTemplate == "" {
		cc.DisplaynameTemplate = "{{.}}"
	}
	var errs []string
	if err := checkIDTemplate(cc.UsernameTemplate, localpartRe); err != nil {
		errs = append(errs, fmt.Sprintf("%s.username_template: %v", prefix, err))
	}
	if err := checkIDTemplate(cc.AliasTemplate, regexp.MustCompile(`^[^:#\s]+$`)); err != nil {
		errs = append(errs, fmt.Sprintf("%s.alias_template: %v", prefix, err))
	}
	if _, err := template.New("displayname").Parse(cc.DisplaynameTemplate); err != nil {
		errs = append(errs, fmt.Sprintf("%s.displayname_template: bad template: %s", prefix, templateErr(err)))
	}
	if len(errs) > 0 {
		return cc, errors.New(strings.Join(errs, "; "))
	}
	return cc, nil
}

// SplitIDTemplate splits a username or alias template around its single {{.}}. Load
// has already checked that it contains exactly one.
func SplitIDTemplate(tmpl string) (before, after string) {
	before, after, _ = strings.Cut(tmpl, "{{.}}")
	return before, after
}

func checkIDTemplate(tmpl string, literal *regexp.Regexp) error {
	if strings.Count(tmpl, "{{.}}") != 1 {
		return fmt.Errorf("must contain {{.}} exactly once, got %q", tmpl)
	}
	before, after := SplitIDTemplate(tmpl)
	lit := before + after
	if strings.Contains(lit, "{{") || strings.Contains(lit, "}}") {
		return fmt.Errorf("only {{.}} may be used, got %q", tmpl)
	}
	if lit != "" && !literal.MatchString(lit) {
		return fmt.Errorf("%q has characters not allowed in a Matrix ID", tmpl)
	}
	return nil
}

// DatabasePath returns the database location to open. For sqlite a relative path is
// resolved beside the config file; ":memory:" and "file:" URIs are returned as they
// are. For postgres it is the connection string unchanged.
func (c *Config) DatabasePath() string {
	uri := c.Database.URI
	if c.Database.Type != "sqlite" || uri == ":memory:" || strings.HasPrefix(uri, "file:") ||
		filepath.IsAbs(uri) || c.Path == "" {
		return uri
	}
	return filepath.Join(filepath.Dir(c.Path), uri)
}

// --- shape checking: walk the YAML tree beside the Go types so that every type error
// names its key.

var (
	nodeType        = reflect.TypeFor[yaml.Node]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// checkShape reports where the YAML node n does not fit the Go type t. line is the
// line to report: that of n's key, or n's own for list items and the document.
func checkShape(path string, n *yaml.Node, t reflect.Type, line int) []string {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if t == nodeType {
		return nil
	}
	if isNull(n) {
		return nil
	}
	bad := func(want string) []string {
		return []string{fmt.Sprintf("%s: expected %s, got %s (line %d)", displayPath(path), want, describeNode(n), line)}
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		v := reflect.New(t).Interface().(yaml.Unmarshaler)
		if err := v.UnmarshalYAML(n); err != nil {
			return []string{fmt.Sprintf("%s: %v (line %d)", displayPath(path), err, line)}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkShape(path, n, t.Elem(), line)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return bad("a mapping")
		}
		fields := yamlFields(t)
		return walkMapping(path, n, func(key string) (reflect.Type, bool) {
			ft, ok := fields[key]
			return ft, ok
		}, false)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return bad("a mapping")
		}
		return walkMapping(path, n, func(string) (reflect.Type, bool) { return t.Elem(), true }, true)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return bad("a list")
		}
		var errs []string
		for i, e := range n.Content {
			errs = append(errs, checkShape(fmt.Sprintf("%s[%d]", path, i), e, t.Elem(), e.Line)...)
		}
		return errs
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return bad("a string")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return bad("a whole number")
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			return bad("true or false")
		}
	}
	return nil
}

func walkMapping(path string, n *yaml.Node, field func(string) (reflect.Type, bool), isMap bool) []string {
	var errs []string
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Sprintf("%s: keys must be strings (line %d)", displayPath(path), k.Line))
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			continue
		}
		name := k.Value
		if isMap {
			name = fmtKey(name)
		}
		kp := joinPath(path, name)
		if line, dup := seen[k.Value]; dup {
			errs = append(errs, fmt.Sprintf("%s: defined twice (lines %d and %d)", kp, line, k.Line))
			continue
		}
		seen[k.Value] = k.Line
		ft, ok := field(k.Value)
		if !ok {
			errs = append(errs, fmt.Sprintf("%s: unknown key (line %d)", kp, k.Line))
			continue
		}
		errs = append(errs, checkShape(kp, v, ft, k.Line)...)
	}
	return errs
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields
}

// translateDecodeError turns a yaml.v3 decode error into "<key>: <problem> (line N)"
// lines. checkShape catches almost everything first; this is the fallback.
func translateDecodeError(doc *yaml.Node, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		sm := typeErrLineRe.FindStringSubmatch(m)
		if sm == nil {
			msgs = append(msgs, m)
			continue
		}
		line, _ := strconv.Atoi(sm[1])
		if p := pathAtLine(doc, "", line); p != "" {
			msgs = append(msgs, fmt.Sprintf("%s: %s (line %d)", p, sm[2], line))
		} else {
			msgs = append(msgs, m)
		}
	}
	return errors.New(strings.Join(msgs, "; "))
}

// pathAtLine returns the dotted path of the deepest key on line, or whose value
// starts on line.
func pathAtLine(n *yaml.Node, path string, line int) string {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kp := joinPath(path, fmtKey(k.Value))
			if deeper := pathAtLine(v, kp, line); deeper != "" {
				return deeper
			}
			if k.Line == line || v.Line == line {
				return kp
			}
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			ep := fmt.Sprintf("%s[%d]", path, i)
			if deeper := pathAtLine(e, ep, line); deeper != "" {
				return deeper
			}
			if e.Line == line {
				return ep
			}
		}
	}
	return ""
}

// present reports whether the key path exists in the mapping doc.
func present(doc *yaml.Node, keys ...string) bool {
	n := doc
	for _, key := range keys {
		if n.Kind != yaml.MappingNode {
			return false
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return false
		}
		n = next
	}
	return !isNull(n)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

func describeNode(n *yaml.Node) string {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!bool":
			return "a boolean (" + n.Value + ")"
		case "!!int", "!!float":
			return "a number (" + n.Value + ")"
		default:
			return fmt.Sprintf("a string (%q)", n.Value)
		}
	}
	return "something else"
}

func isHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p > 0 && p < 65536
}

func templateErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s, "template: ") {
		return s[i+2:]
	}
	return s
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func displayPath(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func fmtKey(k string) string {
	if plainKeyRe.MatchString(k) {
		return k
	}
	return strconv.Quote(k)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// compile-time check that Duration satisfies both YAML interfaces.
var (
	_ yaml.Unmarshaler = (*Duration)(nil)
	_ yaml.Marshaler   = Duration(0)
)
