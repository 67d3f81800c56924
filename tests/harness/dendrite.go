package harness

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// DefaultDomain is the server name test homeservers use. Federation is off, so it need
// not resolve; user IDs look like @alice:hs.test.
const DefaultDomain = "hs.test"

// dendriteStartTimeout bounds how long StartDendrite waits for the client API.
const dendriteStartTimeout = 90 * time.Second

// Homeserver is a running Dendrite started by StartDendrite.
type Homeserver struct {
	// URL is the client-server API base, e.g. http://127.0.0.1:40123.
	URL string
	// Domain is the server name in user IDs (DefaultDomain).
	Domain string
	// Dir holds the config, signing key, SQLite databases, media, JetStream storage
	// and the log file.
	Dir string
	// SharedSecret is the registration_shared_secret used by RegisterUser.
	SharedSecret string
	// ConfigPath is the generated dendrite.yaml.
	ConfigPath string
	// LogPath is the file receiving Dendrite's stdout and stderr.
	LogPath string
	// Port is the loopback port the client API listens on.
	Port int

	bin  string
	proc *process
}

// StartDendrite starts a Dendrite homeserver whose state lives in dir, loading the
// given appservice registration files, and returns once GET /_matrix/client/versions
// answers. The dendrite binaries are built (or taken from the cache) with
// BuildDendrite.
//
// The generated configuration uses SQLite files in dir, an on-disk JetStream in dir,
// federation disabled, registration disabled except through a random shared secret,
// rate limiting off, minimal bcrypt cost, and logs at info level to stdout, which
// goes to dir/dendrite.log. Calling StartDendrite again with the same dir restarts
// the same homeserver (the signing key and databases are reused).
func StartDendrite(ctx context.Context, dir string, appserviceRegistrations []string) (*Homeserver, error) {
	binDir, err := BuildDendrite(ctx)
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving homeserver dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating homeserver dir: %w", err)
	}
	regs := make([]string, 0, len(appserviceRegistrations))
	for _, r := range appserviceRegistrations {
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("resolving appservice registration %s: %w", r, err)
		}
		regs = append(regs, abs)
	}

	keyPath := filepath.Join(dir, "matrix_key.pem")
	if _, err := os.Stat(keyPath); os.IsNotExist(err) {
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "generate-keys"), "--private-key", keyPath)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("generating dendrite signing key: %w\n%s", err, out)
		}
	}

	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	hs := &Homeserver{
		URL:          "http://127.0.0.1:" + strconv.Itoa(port),
		Domain:       DefaultDomain,
		Dir:          dir,
		SharedSecret: randomHex(16),
		ConfigPath:   filepath.Join(dir, "dendrite.yaml"),
		LogPath:      filepath.Join(dir, "dendrite.log"),
		Port:         port,
	}
	cfg, err := yaml.Marshal(dendriteConfig(dir, hs.Domain, keyPath, hs.SharedSecret, regs))
	if err != nil {
		return nil, fmt.Errorf("encoding dendrite config: %w", err)
	}
	if err := os.WriteFile(hs.ConfigPath, cfg, 0o600); err != nil {
		return nil, fmt.Errorf("writing dendrite config: %w", err)
	}

	hs.bin = filepath.Join(binDir, "dendrite")
	if err := hs.start(ctx); err != nil {
		return nil, err
	}
	return hs, nil
}

func (hs *Homeserver) start(ctx context.Context) error {
	var err error
	hs.proc, err = startProcess("dendrite", hs.LogPath, hs.Dir, hs.bin,
		"--config", hs.ConfigPath,
		"--http-bind-address", "127.0.0.1:"+strconv.Itoa(hs.Port),
	)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, hs.proc, hs.URL+"/_matrix/client/versions", dendriteStartTimeout); err != nil {
		hs.proc.kill()
		return fmt.Errorf("starting dendrite: %w", err)
	}
	return nil
}

// Restart kills Dendrite (SIGKILL, as a crash or an OOM kill would), waits pause and
// starts it again on the same port with the same config and state, returning once its
// client API answers.
func (hs *Homeserver) Restart(ctx context.Context, pause time.Duration) error {
	hs.proc.kill()
	if err := sleepCtx(ctx, pause); err != nil {
		return err
	}
	return hs.start(ctx)
}

// dendriteConfig is a Dendrite config file (format version 2, as read by v0.15) for a
// single-process, SQLite-backed, loopback-only test server. Keys are checked against
// setup/config in Dendrite v0.15.2.
func dendriteConfig(dir, domain, keyPath, sharedSecret string, registrations []string) map[string]any {
	db := func(name string) map[string]any {
		// SQLite monoliths need one database per component; the global database
		// block is for PostgreSQL only.
		return map[string]any{"connection_string": "file:" + filepath.Join(dir, name+".db")}
	}
	if registrations == nil {
		registrations = []string{}
	}
	return map[string]any{
		"version": 2,
		"global": map[string]any{
			"server_name":                    domain,
			"private_key":                    keyPath,
			"key_validity_period":            "168h0m0s",
			"disable_federation":             true,
			"trusted_third_party_id_servers": []string{},
			"presence":                       map[string]any{"enable_inbound": true, "enable_outbound": true},
			"report_stats":                   map[string]any{"enabled": false},
			"server_notices":                 map[string]any{"enabled": false},
			"jetstream": map[string]any{
				"addresses":    []string{},
				"storage_path": filepath.Join(dir, "jetstream"),
				"topic_prefix": "Dendrite",
			},
			"metrics":   map[string]any{"enabled": false},
			"dns_cache": map[string]any{"enabled": false},
			"cache":     map[string]any{"max_size_estimated": "128mb", "max_age": "1h"},
		},
		"app_service_api": map[string]any{
			"disable_tls_validation": true,
			// Dendrite always sends "Authorization: Bearer <hs_token>"; legacy_auth
			// would add ?access_token= as well.
			"legacy_auth": false,
			// false: pushes go to /_matrix/app/v1/transactions/{txnId}.
			"legacy_paths": false,
			"config_files": registrations,
		},
		"client_api": map[string]any{
			"registration_disabled":       true,
			"guests_disabled":             true,
			"registration_shared_secret":  sharedSecret,
			"enable_registration_captcha": false,
			"rate_limiting":               map[string]any{"enabled": false, "threshold": 20, "cooloff_ms": 500},
		},
		"federation_api": map[string]any{
			"database":                db("federationapi"),
			"send_max_retries":        16,
			"disable_tls_validation":  false,
			"disable_http_keepalives": false,
			"key_perspectives":        []any{},
			"prefer_direct_fetch":     true,
		},
		"key_server": map[string]any{"database": db("keyserver")},
		"media_api": map[string]any{
			"database":                 db("mediaapi"),
			"base_path":                filepath.Join(dir, "media"),
			"max_file_size_bytes":      10485760,
			"dynamic_thumbnails":       false,
			"max_thumbnail_generators": 2,
		},
		"mscs":        map[string]any{"database": db("mscs"), "mscs": []string{}},
		"room_server": map[string]any{"database": db("roomserver")},
		"relay_api":   map[string]any{"database": db("relayapi")},
		"sync_api": map[string]any{
			"database": db("syncapi"),
			"search":   map[string]any{"enabled": false, "index_path": filepath.Join(dir, "searchindex")},
		},
		"user_api": map[string]any{
			"account_database": db("userapi"),
			// bcrypt.MinCost: logins in tests should be fast.
			"bcrypt_cost": 4,
		},
		"tracing": map[string]any{"enabled": false},
		"logging": []any{map[string]any{"type": "std", "level": "info"}},
	}
}

// Stop sends SIGTERM to Dendrite and waits for it to exit, killing it after 10 s.
// It is safe to call more than once.
func (hs *Homeserver) Stop() {
	hs.proc.stop(10 * time.Second)
}

// Kill sends SIGKILL to Dendrite and waits for it to exit.
func (hs *Homeserver) Kill() {
	hs.proc.kill()
}

// LogTail returns the last n lines of Dendrite's log, for printing when a test fails.
func (hs *Homeserver) LogTail(n int) string {
	return tailFile(hs.LogPath, n)
}

// NewClient returns a mautrix client for the homeserver with the given identity and
// token and no sync loop. It is useful for appservice tokens (set SetAppServiceUserID
// on the result to masquerade).
func (hs *Homeserver) NewClient(userID id.UserID, accessToken string) (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(hs.URL, userID, accessToken)
	if err != nil {
		return nil, fmt.Errorf("creating matrix client for %s: %w", userID, err)
	}
	return cli, nil
}

// UserID returns @localpart:domain on this homeserver.
func (hs *Homeserver) UserID(localpart string) id.UserID {
	return id.NewUserID(localpart, hs.Domain)
}

// TestPassword is the password RegisterUser gives every account.
const TestPassword = "passerelle-test-password"

// RegisterUser creates the account localpart through the shared-secret registration
// API (/_synapse/admin/v1/register: GET a nonce, then POST with an HMAC-SHA1 over
// nonce NUL username NUL password NUL "admin"|"notadmin", which Dendrite implements),
// logs it in with TestPassword, and returns it with its /sync recorder running.
// The caller must Close the user.
func (hs *Homeserver) RegisterUser(ctx context.Context, localpart string, admin bool) (*User, error) {
	if err := hs.sharedSecretRegister(ctx, localpart, TestPassword, admin); err != nil {
		return nil, err
	}
	cli, err := hs.NewClient("", "")
	if err != nil {
		return nil, err
	}
	_, err = cli.Login(ctx, &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypePassword,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart},
		Password:                 TestPassword,
		InitialDeviceDisplayName: "passerelle harness",
		StoreCredentials:         true,
	})
	if err != nil {
		return nil, fmt.Errorf("logging in as %s: %w", localpart, err)
	}
	return NewUser(cli), nil
}

// sharedSecretRegister performs the nonce + HMAC registration handshake.
func (hs *Homeserver) sharedSecretRegister(ctx context.Context, localpart, password string, admin bool) error {
	endpoint := hs.URL + "/_synapse/admin/v1/register"
	var nonceResp struct {
		Nonce string `json:"nonce"`
	}
	if err := doJSON(ctx, http.MethodGet, endpoint, nil, &nonceResp); err != nil {
		return fmt.Errorf("registering %s: getting nonce: %w", localpart, err)
	}
	adminStr := "notadmin"
	if admin {
		adminStr = "admin"
	}
	mac := hmac.New(sha1.New, []byte(hs.SharedSecret))
	mac.Write([]byte(nonceResp.Nonce + "\x00" + localpart + "\x00" + password + "\x00" + adminStr))
	body := map[string]any{
		"nonce":    nonceResp.Nonce,
		"username": localpart,
		"password": password,
		"admin":    admin,
		"mac":      hex.EncodeToString(mac.Sum(nil)),
	}
	if err := doJSON(ctx, http.MethodPost, endpoint, body, nil); err != nil {
		return fmt.Errorf("registering %s: %w", localpart, err)
	}
	return nil
}

// doJSON sends body (if any) as JSON and decodes a 200 response into out (if any).
func doJSON(ctx context.Context, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading response: %w", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decoding response: %w", method, url, err)
		}
	}
	return nil
}
