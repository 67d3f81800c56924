package bridge

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestPermissionsPrecedence(t *testing.T) {
	tests := []struct {
		name string
		cfg  map[string]string
		user id.UserID
		want Level
	}{
		{"exact user beats server", map[string]string{"@alice:example.org": "admin", "example.org": "relay", "*": "none"}, "@alice:example.org", LevelAdmin},
		{"exact user may lower the server's level", map[string]string{"@mallory:example.org": "none", "example.org": "user"}, "@mallory:example.org", LevelNone},
		{"server beats wildcard", map[string]string{"example.org": "user", "*": "relay"}, "@bob:example.org", LevelUser},
		{"server may be below wildcard", map[string]string{"evil.example": "none", "*": "relay"}, "@eve:evil.example", LevelNone},
		{"wildcard for other servers", map[string]string{"example.org": "user", "*": "relay"}, "@carol:other.example", LevelRelay},
		{"no match and no wildcard", map[string]string{"example.org": "admin"}, "@dave:other.example", LevelNone},
		{"server key does not match a subdomain", map[string]string{"example.org": "admin"}, "@x:sub.example.org", LevelNone},
		{"server with port", map[string]string{"localhost:8448": "user"}, "@x:localhost:8448", LevelUser},
		{"server with port is not the bare host", map[string]string{"localhost": "user"}, "@x:localhost:8448", LevelNone},
		{"user key of another user", map[string]string{"@alice:example.org": "admin"}, "@alicia:example.org", LevelNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPermissions(tt.cfg, "example.org")
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Level(tt.user); got != tt.want {
				t.Errorf("Level(%s) = %v, want %v", tt.user, got, tt.want)
			}
		})
	}
}

func TestPermissionsEmptyConfig(t *testing.T) {
	for _, cfg := range []map[string]string{nil, {}} {
		p, err := NewPermissions(cfg, "example.org")
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			user id.UserID
			want Level
		}{
			{"@alice:example.org", LevelUser},
			{"@admin:example.org", LevelUser}, // nobody is admin by default
			{"@bob:other.example", LevelNone},
			{"@x:sub.example.org", LevelNone},
		}
		for _, tt := range tests {
			if got := p.Level(tt.user); got != tt.want {
				t.Errorf("cfg %#v: Level(%s) = %v, want %v", cfg, tt.user, got, tt.want)
			}
		}
	}
}

func TestPermissionsBadLevel(t *testing.T) {
	tests := []struct {
		cfg     map[string]string
		wantKey string
	}{
		{map[string]string{"example.org": "superuser"}, "example.org"},
		{map[string]string{"*": "Admin"}, "*"},
		{map[string]string{"@a:b": ""}, "@a:b"},
	}
	for _, tt := range tests {
		_, err := NewPermissions(tt.cfg, "example.org")
		if err == nil || !strings.Contains(err.Error(), "permissions."+tt.wantKey) {
			t.Errorf("NewPermissions(%v) error = %v, want one naming permissions.%s", tt.cfg, err, tt.wantKey)
		}
	}
}

func TestLevelStringRoundTrip(t *testing.T) {
	for _, l := range []Level{LevelNone, LevelRelay, LevelUser, LevelAdmin} {
		got, err := parseLevel(l.String())
		if err != nil || got != l {
			t.Errorf("parseLevel(%q) = %v, %v; want %v", l.String(), got, err, l)
		}
	}
	if !(LevelNone < LevelRelay && LevelRelay < LevelUser && LevelUser < LevelAdmin) {
		t.Error("levels are not ordered none < relay < user < admin")
	}
}

func TestAdmins(t *testing.T) {
	p, err := NewPermissions(map[string]string{"@zoe:example.org": "admin", "@amy:example.org": "admin",
		"example.org": "admin", "@bob:example.org": "user"}, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	got := p.Admins()
	if len(got) != 2 || got[0] != "@amy:example.org" || got[1] != "@zoe:example.org" {
		t.Errorf("Admins() = %v, want the two users named as admins, sorted", got)
	}
}
