package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const minimal = `homeserver:
  address: http://localhost:8008
  domain: example.org
appservice:
  address: http://localhost:29300
  listen: 127.0.0.1:29300
`

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string // substrings of the error message
	}{
		{"empty file", "", []string{"homeserver.address: missing", "homeserver.domain: missing", "appservice.address: missing", "appservice.listen: missing"}},
		{"missing domain", strings.Replace(minimal, "  domain: example.org\n", "", 1), []string{"homeserver.domain: missing"}},
		{"syntax", "homeserver:\n  address: [\n", []string{"line"}},
		{"wrong type mapping", minimal + "bridge:\n  command_prefix:\n    a: b\n", []string{"bridge.command_prefix: expected a string, got a mapping (line 8)"}},
		{"wrong type listen", strings.Replace(minimal, "listen: 127.0.0.1:29300", "listen:\n    host: x", 1), []string{"appservice.listen: expected a string, got a mapping"}},
		{"wrong type int", minimal + "bridge:\n  max_queue: lots\n", []string{"bridge.max_queue: expected a whole number", `"lots"`}},
		{"wrong type bool", minimal + "bridge:\n  bridge_other_bridges: maybe\n", []string{"bridge.bridge_other_bridges: expected true or false"}},
		{"wrong type list", minimal + "bridge:\n  other_bridge_patterns: abc\n", []string{"bridge.other_bridge_patterns: expected a list"}},
		{"unknown key", minimal + "bridge:\n  comand_prefix: '!x'\n", []string{"bridge.comand_prefix: unknown key (line 8)"}},
		{"unknown top-level key", minimal + "foo: 1\n", []string{"foo: unknown key"}},
		{"duplicate key", minimal + "logging:\n  level: info\n  level: debug\n", []string{"logging.level: defined twice"}},
		{"unknown database type", minimal + "database:\n  type: mysql\n", []string{`database.type: unknown type "mysql" (want sqlite or postgres)`}},
		{"bad permission", minimal + "permissions:\n  '@a:example.org': superuser\n", []string{`permissions."@a:example.org": unknown level "superuser"`}},
		{"bad relay format", minimal + "bridge:\n  relay_formats:\n    text: '{{.Sender'\n", []string{"bridge.relay_formats.text: bad template"}},
		{"unknown relay format", minimal + "bridge:\n  relay_formats:\n    sticker: x\n", []string{"bridge.relay_formats.sticker: unknown message type"}},
		{"bad regexp", minimal + "bridge:\n  other_bridge_patterns: ['(']\n", []string{"bridge.other_bridge_patterns[0]: bad regular expression"}},
		{"bad duration", minimal + "bridge:\n  retention: forever\n", []string{"bridge.retention: invalid duration"}},
		{"zero retention", minimal + "bridge:\n  retention: 0d\n", []string{"bridge.retention: must be greater than 0"}},
		{"zero key wait", minimal + "bridge:\n  encryption:\n    key_wait: 0s\n", []string{"bridge.encryption.key_wait: must be greater than 0"}},
		{"negative queue", minimal + "bridge:\n  max_queue: -1\n", []string{"bridge.max_queue: must be greater than 0"}},
		{"bad hs url", strings.Replace(minimal, "http://localhost:8008", "localhost:8008", 1), []string{"homeserver.address: want an http:// or https:// URL"}},
		{"bad as url", strings.Replace(minimal, "http://localhost:29300", "ftp://x", 1), []string{"appservice.address: want an http:// or https:// URL"}},
		{"bad listen", strings.Replace(minimal, "127.0.0.1:29300", "29300", 1), []string{"appservice.listen: want host:port"}},
		{"bad domain", strings.Replace(minimal, "domain: example.org", "domain: https://example.org", 1), []string{"homeserver.domain: want a server name"}},
		{"bad bot username", minimal + "  bot:\n    username: Bot\n", []string{"appservice.bot.username:"}},
		{"bad log level", minimal + "logging:\n  level: loud\n", []string{"logging.level: unknown level"}},
		{"bad secret", minimal + "double_puppet:\n  secrets:\n    example.org: abc\n", []string{`double_puppet.secrets."example.org": want "as_token:<token>"`}},
		{"connector not a mapping", minimal + "connectors:\n  irc: yes\n", []string{"connectors.irc: expected a mapping"}},
		{"connector enabled type", minimal + "connectors:\n  irc:\n    enabled: sometimes\n", []string{"connectors.irc.enabled: expected true or false"}},
		{"connector template twice", minimal + "connectors:\n  irc:\n    username_template: 'a{{.}}{{.}}'\n", []string{"connectors.irc.username_template: must contain {{.}} exactly once"}},
		{"connector template none", minimal + "connectors:\n  irc:\n    alias_template: 'irc'\n", []string{"connectors.irc.alias_template: must contain {{.}} exactly once"}},
		{"connector template bad chars", minimal + "connectors:\n  irc:\n    username_template: 'IRC_{{.}}'\n", []string{"connectors.irc.username_template:"}},
		{"connector bad name", minimal + "connectors:\n  Irc: {}\n", []string{"connectors.Irc: bad connector name"}},
		{"document not a mapping", "- a\n- b\n", []string{"expected a mapping, got a list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.content)
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", tt.want)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			if !strings.HasPrefix(msg, path+": ") {
				t.Errorf("error %q does not start with the file name", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml: cannot read: no such file or directory") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadDefaults(t *testing.T) {
	path := writeConfig(t, minimal)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"command_prefix", cfg.Bridge.CommandPrefix, "!pass"},
		{"retention", cfg.Bridge.Retention.Std(), 30 * 24 * time.Hour},
		{"max_queue", cfg.Bridge.MaxQueue, 10000},
		{"retry_window", cfg.Bridge.RetryWindow.Std(), 90 * time.Minute},
		{"max_file_bytes", cfg.Bridge.MaxFileBytes, int64(50 << 20)},
		{"file_timeout", cfg.Bridge.FileTimeout.Std(), 5 * time.Minute},
		{"max_queue_per_chat", cfg.Bridge.MaxQueuePerChat, 1000},
		{"max_chat_rate", cfg.Bridge.MaxChatRate, 20.0},
		{"spool_dir", cfg.Bridge.SpoolDir, "media-spool"},
		{"max_media_downloads", cfg.AppService.MaxMediaDownloads, 16},
		{"key_wait", cfg.Bridge.Encryption.KeyWait.Std(), 2 * time.Minute},
		{"max_body_bytes", cfg.AppService.MaxBodyBytes, int64(16 << 20)},
		{"id", cfg.AppService.ID, "passerelle"},
		{"bot username", cfg.AppService.Bot.Username, "passerelle"},
		{"bot displayname", cfg.AppService.Bot.Displayname, "Passerelle bridge bot"},
		{"db type", cfg.Database.Type, "sqlite"},
		{"db uri", cfg.Database.URI, "passerelle.db"},
		{"log level", cfg.Logging.Level, "info"},
		{"log format", cfg.Logging.Format, "console"},
		{"permissions", len(cfg.Permissions), 1},
		{"permissions domain", cfg.Permissions["example.org"], "user"},
		{"relay text", cfg.Bridge.RelayFormats["text"], "{{.Sender}}: {{.Message}}"},
		{"relay notice", cfg.Bridge.RelayFormats["notice"], "{{.Sender}}: {{.Message}}"},
		{"relay emote", cfg.Bridge.RelayFormats["emote"], "* {{.Sender}} {{.Message}}"},
		{"relay media", cfg.Bridge.RelayFormats["media"], "{{.Sender}} sent {{.FileName}}{{if .Caption}}: {{.Caption}}{{end}}"},
		{"relay edit", cfg.Bridge.RelayFormats["edit"], "{{.Sender}} (edit): {{.Message}}"},
		{"path", cfg.Path, path},
		{"db path", cfg.DatabasePath(), filepath.Join(filepath.Dir(path), "passerelle.db")},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadKeepsSetValues(t *testing.T) {
	cfg, err := Load(writeConfig(t, minimal+`bridge:
  retention: 12h
  relay_formats:
    text: "<{{.Sender}}> {{.Message}}"
permissions:
  "*": relay
database:
  type: postgres
  uri: postgres://localhost/p
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bridge.Retention.Std() != 12*time.Hour {
		t.Errorf("retention = %v", cfg.Bridge.Retention)
	}
	if cfg.Bridge.RelayFormats["text"] != "<{{.Sender}}> {{.Message}}" || cfg.Bridge.RelayFormats["edit"] == "" {
		t.Errorf("relay formats = %v", cfg.Bridge.RelayFormats)
	}
	if len(cfg.Permissions) != 1 || cfg.Permissions["*"] != "relay" {
		t.Errorf("permissions = %v", cfg.Permissions)
	}
	if cfg.DatabasePath() != "postgres://localhost/p" {
		t.Errorf("DatabasePath = %q", cfg.DatabasePath())
	}
}

func TestDatabasePathAbsolute(t *testing.T) {
	cfg := &Config{Path: "/etc/passerelle/config.yaml", Database: DatabaseConfig{Type: "sqlite", URI: "/var/lib/p.db"}}
	if got := cfg.DatabasePath(); got != "/var/lib/p.db" {
		t.Errorf("got %q", got)
	}
	cfg.Database.URI = "data/p.db"
	if got := cfg.DatabasePath(); got != "/etc/passerelle/data/p.db" {
		t.Errorf("got %q", got)
	}
}

func TestDuration(t *testing.T) {
	good := map[string]time.Duration{
		"30d":   30 * 24 * time.Hour,
		"1d":    24 * time.Hour,
		"12h":   12 * time.Hour,
		"90m":   90 * time.Minute,
		"1h30m": 90 * time.Minute,
		"45s":   45 * time.Second,
	}
	for in, want := range good {
		var v struct {
			D Duration `yaml:"d"`
		}
		if err := yaml.Unmarshal([]byte("d: "+in), &v); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if v.D.Std() != want {
			t.Errorf("%s = %v, want %v", in, v.D.Std(), want)
		}
		out, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			D Duration `yaml:"d"`
		}
		if err := yaml.Unmarshal(out, &back); err != nil || back.D != v.D {
			t.Errorf("%s: round trip gave %q (%v)", in, out, err)
		}
	}
	for _, in := range []string{"30", "d", "1.5d", "-1d", "soon", "30 days"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", in)
		}
	}
	if s := Duration(30 * 24 * time.Hour).String(); s != "30d" {
		t.Errorf("String = %q", s)
	}
	if s := Duration(90 * time.Minute).String(); s != "1h30m0s" {
		t.Errorf("String = %q", s)
	}
}

func TestExampleLoads(t *testing.T) {
	path := writeConfig(t, Example())
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Example() does not load: %v", err)
	}
	if cfg.AppService.ASToken != "" || cfg.AppService.HSToken != "" {
		t.Error("example ships with tokens")
	}
	if cfg.Permissions["@admin:example.org"] != "admin" {
		t.Errorf("permissions = %v", cfg.Permissions)
	}
	// The commented-out connectors must be valid once uncommented.
	var uncommented []string
	in := false
	for _, line := range strings.Split(Example(), "\n") {
		if line == "# connectors:" {
			in = true
		}
		if in {
			if !strings.HasPrefix(line, "#") {
				break
			}
			uncommented = append(uncommented, strings.TrimPrefix(strings.TrimPrefix(line, "#"), " "))
		}
	}
	cfg, err = Load(writeConfig(t, Example()+strings.Join(uncommented, "\n")+"\n"))
	if err != nil {
		t.Fatalf("example connectors do not load: %v", err)
	}
	names, err := cfg.EnabledConnectors()
	if err != nil || strings.Join(names, ",") != "irc,whatsapp" {
		t.Errorf("EnabledConnectors = %v, %v", names, err)
	}
}

func TestConnectors(t *testing.T) {
	cfg, err := Load(writeConfig(t, minimal+`connectors:
  whatsapp:
    enabled: false
  irc:
    displayname_template: "{{.}} (IRC)"
    networks:
      libera: {server: irc.libera.chat}
  relaybot:
  zz:
    enabled: true
    username_template: "zz-{{.}}-x"
`))
	if err != nil {
		t.Fatal(err)
	}
	names, err := cfg.EnabledConnectors()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, ","); got != "irc,relaybot,zz" {
		t.Errorf("EnabledConnectors = %s", got)
	}
	cc, err := cfg.ConnectorCommon("irc")
	if err != nil {
		t.Fatal(err)
	}
	want := ConnectorCommon{UsernameTemplate: "irc_{{.}}", AliasTemplate: "irc_{{.}}", DisplaynameTemplate: "{{.}} (IRC)"}
	if cc != want {
		t.Errorf("irc = %+v, want %+v", cc, want)
	}
	cc, err = cfg.ConnectorCommon("zz")
	if err != nil || cc.UsernameTemplate != "zz-{{.}}-x" || cc.Enabled == nil || !*cc.Enabled {
		t.Errorf("zz = %+v, %v", cc, err)
	}
	if _, err := cfg.ConnectorCommon("nope"); err == nil || !strings.Contains(err.Error(), "connectors.nope: not configured") {
		t.Errorf("missing connector: %v", err)
	}
	before, after := SplitIDTemplate("zz-{{.}}-x")
	if before != "zz-" || after != "-x" {
		t.Errorf("SplitIDTemplate = %q, %q", before, after)
	}
}

func TestSetTokens(t *testing.T) {
	path := writeConfig(t, "# top comment\n"+minimal+"  # the bot\n  bot:\n    username: mybot # inline\n  as_token: \"\"\nlogging:\n  level: debug\n")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SetTokens(path, "AS123", "HS456"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"# top comment", "# the bot", "# inline"} {
		if !strings.Contains(string(data), c) {
			t.Errorf("comment %q lost:\n%s", c, data)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("config no longer loads: %v\n%s", err, data)
	}
	if cfg.AppService.ASToken != "AS123" || cfg.AppService.HSToken != "HS456" {
		t.Errorf("tokens = %q, %q", cfg.AppService.ASToken, cfg.AppService.HSToken)
	}
	if cfg.AppService.Bot.Username != "mybot" || cfg.Logging.Level != "debug" {
		t.Errorf("other keys changed: %+v %+v", cfg.AppService.Bot, cfg.Logging)
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries", len(entries))
	}
}

func TestSetTokensExample(t *testing.T) {
	path := writeConfig(t, Example())
	if err := SetTokens(path, "a", "b"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	for _, c := range []string{"# connectors:", "#   irc:", "Leave them empty: generate-registration", "# Double puppeting"} {
		if !strings.Contains(string(data), c) {
			t.Errorf("comment %q lost:\n%s", c, data)
		}
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AppService.ASToken != "a" || cfg.AppService.HSToken != "b" {
		t.Errorf("tokens not set")
	}
}

func TestWriteFileExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteFileExclusive(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileExclusive(path, []byte("y"), 0o600); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second write: %v", err)
	}
}
