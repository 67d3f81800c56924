package harness

import (
	"bufio"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// The E2EE driver: a Node script (matrix-js-sdk with its Rust crypto, keys in memory)
// that plays one Matrix device, driven over newline-delimited JSON on stdin/stdout. Its
// package.json pins matrix-js-sdk 37.5.0, the newest release that declares Node 20.
//
//go:embed testdata/e2ee-driver/package.json testdata/e2ee-driver/package-lock.json testdata/e2ee-driver/driver.mjs
var e2eeDriverFiles embed.FS

const e2eeDriverSrc = "testdata/e2ee-driver"

// e2eeStopGrace bounds how long Close waits for the driver to stop by itself.
const e2eeStopGrace = 5 * time.Second

// InstallE2EEDriver installs the E2EE driver's npm dependencies (npm ci from the
// embedded package.json and package-lock.json) into <CacheDir>/e2ee-driver-<hash of
// both files> unless that directory already exists, and writes the driver script there
// as driver-<hash of the script>.mjs. It returns the script's path. An exclusive file
// lock serializes concurrent callers, as BuildDendrite does; the install happens in a
// scratch directory renamed into place, so the directory exists only once complete.
// It needs node and npm on PATH and the npm registry reachable on the first run.
func InstallE2EEDriver(ctx context.Context) (script string, err error) {
	pkg, err := e2eeDriverFiles.ReadFile(e2eeDriverSrc + "/package.json")
	if err != nil {
		return "", fmt.Errorf("reading embedded e2ee driver: %w", err)
	}
	lock, err := e2eeDriverFiles.ReadFile(e2eeDriverSrc + "/package-lock.json")
	if err != nil {
		return "", fmt.Errorf("reading embedded e2ee driver: %w", err)
	}
	driver, err := e2eeDriverFiles.ReadFile(e2eeDriverSrc + "/driver.mjs")
	if err != nil {
		return "", fmt.Errorf("reading embedded e2ee driver: %w", err)
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("creating test cache: %w", err)
	}
	name := "e2ee-driver-" + shortHash(pkg, []byte{0}, lock)
	dir := filepath.Join(cache, name)
	if !e2eeDriverInstalled(dir) {
		if err := installE2EEDriverDeps(ctx, cache, name, pkg, lock); err != nil {
			return "", err
		}
	}
	script = filepath.Join(dir, "driver-"+shortHash(driver)+".mjs")
	if _, err := os.Stat(script); err == nil {
		return script, nil
	}
	// Write and rename, so a concurrent reader never runs half a script.
	f, err := os.CreateTemp(dir, ".driver-*.mjs")
	if err != nil {
		return "", fmt.Errorf("writing e2ee driver script: %w", err)
	}
	_, werr := f.Write(driver)
	if werr == nil {
		werr = f.Chmod(0o644)
	}
	cerr := f.Close()
	if werr != nil || cerr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("writing e2ee driver script: %w", errors.Join(werr, cerr))
	}
	if err := os.Rename(f.Name(), script); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("installing e2ee driver script: %w", err)
	}
	return script, nil
}

// installE2EEDriverDeps runs npm ci for the driver under the cache lock and renames the
// result to <cache>/<name>.
func installE2EEDriverDeps(ctx context.Context, cache, name string, pkg, lock []byte) error {
	dir := filepath.Join(cache, name)
	unlock, err := lockFile(ctx, filepath.Join(cache, name+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	// Another process may have installed it while we waited for the lock.
	if e2eeDriverInstalled(dir) {
		return nil
	}
	// A directory without the SDK is not ours to trust: start over.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing incomplete e2ee driver install %s: %w", dir, err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("installing the e2ee driver needs npm on PATH: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, "e2ee-driver-install-")
	if err != nil {
		return fmt.Errorf("creating e2ee driver install dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("creating e2ee driver install dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), pkg, 0o644); err != nil {
		return fmt.Errorf("writing e2ee driver package.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "package-lock.json"), lock, 0o644); err != nil {
		return fmt.Errorf("writing e2ee driver package-lock.json: %w", err)
	}
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci for the e2ee driver in %s: %w\n%s", tmp, err, out)
	}
	if !e2eeDriverInstalled(tmp) {
		return fmt.Errorf("npm ci for the e2ee driver in %s left no node_modules/matrix-js-sdk", tmp)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("installing e2ee driver into cache: %w", err)
	}
	return nil
}

// e2eeDriverInstalled reports whether dir holds an installed matrix-js-sdk.
func e2eeDriverInstalled(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "node_modules", "matrix-js-sdk", "package.json"))
	return err == nil && st.Mode().IsRegular()
}

// shortHash is the first 16 hex digits of the SHA-256 of the concatenated parts.
func shortHash(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// E2EEClient is one Matrix device with end-to-end encryption, independent of the bridge:
// a Node process running matrix-js-sdk with Rust crypto (keys in memory, so the process
// lives as long as the client). It records every timeline event it can read, decrypted,
// from the moment it starts; WaitMessage finds them. Close stops it.
type E2EEClient struct {
	UserID   id.UserID
	DeviceID id.DeviceID
	// Ed25519 and Curve25519 are the device's identity keys (unpadded base64).
	Ed25519    string
	Curve25519 string
	// CryptoVersion names the crypto backend, e.g. "Rust SDK 0.11.1 (...), Vodozemac 0.9.0".
	CryptoVersion string
	// LogPath receives the driver's stderr: the SDK's and the Rust crypto's logs.
	LogPath string

	cmd     *exec.Cmd
	stdin   io.WriteCloser
	logFile *os.File
	writeMu sync.Mutex
	nextID  atomic.Int64

	// done is closed once the driver's stdout ended and the process was reaped.
	done    chan struct{}
	waitErr error

	closeOnce sync.Once

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever something is recorded
	pending map[int64]chan e2eeResponse
	msgs    []E2EEMessage
	utds    []E2EEUndecryptable
	invites []Invite
}

// E2EEMessage is a timeline event (not state) an E2EEClient received, after decryption.
type E2EEMessage struct {
	RoomID  id.RoomID
	EventID id.EventID
	Sender  id.UserID
	// Type is the event type after decryption (m.room.message for text).
	Type event.Type
	// MsgType and Body are read from Content for m.room.message events.
	MsgType event.MessageType
	Body    string
	// Encrypted reports whether the event was m.room.encrypted on the wire.
	Encrypted bool
	// Content is the decrypted content as JSON.
	Content   json.RawMessage
	Timestamp int64
}

// E2EEUndecryptable is an encrypted event the client could not decrypt when it
// arrived. The SDK retries when the key comes later; the event then shows up as an
// E2EEMessage as well.
type E2EEUndecryptable struct {
	RoomID  id.RoomID
	EventID id.EventID
	Sender  id.UserID
	Reason  string
}

// e2eeLine is any line the driver writes to stdout: a response (ID set) or an event.
type e2eeLine struct {
	ID     int64           `json:"id"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`

	Event     string          `json:"event"`
	RoomID    id.RoomID       `json:"room_id"`
	EventID   id.EventID      `json:"event_id"`
	Sender    id.UserID       `json:"sender"`
	Type      string          `json:"type"`
	Content   json.RawMessage `json:"content"`
	Encrypted bool            `json:"encrypted"`
	TS        int64           `json:"origin_server_ts"`
	Reason    string          `json:"reason"`
	Inviter   id.UserID       `json:"inviter"`
}

type e2eeResponse struct {
	ok     bool
	result json.RawMessage
	err    string
}

// StartE2EEClient logs user in again with TestPassword as a new device and starts an
// E2EEClient on it. A device of its own is required: the User's /sync loop would
// otherwise consume the to-device messages (room keys) meant for the crypto client. The
// driver's log goes to hs.Dir.
func StartE2EEClient(ctx context.Context, hs *Homeserver, user *User) (*E2EEClient, error) {
	token, deviceID, err := LoginNewDevice(ctx, hs, user.UserID, TestPassword, "passerelle e2ee test client")
	if err != nil {
		return nil, err
	}
	return StartE2EEClientWithToken(ctx, hs, user.UserID, token, deviceID)
}

// LoginNewDevice logs userID in with a password and returns the new device's access
// token and ID.
func LoginNewDevice(ctx context.Context, hs *Homeserver, userID id.UserID, password, displayName string) (string, id.DeviceID, error) {
	cli, err := hs.NewClient("", "")
	if err != nil {
		return "", "", err
	}
	resp, err := cli.Login(ctx, &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypePassword,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: userID.Localpart()},
		Password:                 password,
		InitialDeviceDisplayName: displayName,
	})
	if err != nil {
		return "", "", fmt.Errorf("logging %s in as a new device: %w", userID, err)
	}
	if resp.DeviceID == "" {
		return "", "", fmt.Errorf("logging %s in: the homeserver returned no device ID", userID)
	}
	return resp.AccessToken, resp.DeviceID, nil
}

// StartE2EEClientWithToken installs the driver if needed (InstallE2EEDriver), starts it
// for the given device and returns once its first sync is done and the homeserver
// serves the device's identity and one-time keys, so other devices can encrypt for it
// as soon as this returns. No other client may /sync with the same device (it would
// take the to-device messages). The driver's log goes to hs.Dir.
func StartE2EEClientWithToken(ctx context.Context, hs *Homeserver, userID id.UserID, accessToken string, deviceID id.DeviceID) (*E2EEClient, error) {
	script, err := InstallE2EEDriver(ctx)
	if err != nil {
		return nil, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("the e2ee driver needs node (v20 or later) on PATH: %w", err)
	}
	logPath := filepath.Join(hs.Dir, fmt.Sprintf("e2ee-%s-%s.log", userID.Localpart(), deviceID))
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening e2ee driver log: %w", err)
	}
	fmt.Fprintf(logFile, "\n===== harness: starting e2ee driver %s for %s/%s at %s =====\n",
		script, userID, deviceID, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(node, script)
	cmd.Dir = filepath.Dir(script)
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("e2ee driver stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("e2ee driver stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting e2ee driver: %w", err)
	}
	c := &E2EEClient{
		UserID:   userID,
		DeviceID: deviceID,
		LogPath:  logPath,
		cmd:      cmd,
		stdin:    stdin,
		logFile:  logFile,
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		pending:  make(map[int64]chan e2eeResponse),
	}
	go c.readLoop(stdout)

	var started struct {
		DeviceID      id.DeviceID `json:"device_id"`
		Ed25519       string      `json:"ed25519"`
		Curve25519    string      `json:"curve25519"`
		CryptoVersion string      `json:"crypto_version"`
	}
	err = c.call(ctx, "start", map[string]any{
		"homeserver":   hs.URL,
		"user_id":      userID,
		"access_token": accessToken,
		"device_id":    deviceID,
	}, &started)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("starting e2ee client for %s/%s: %w; driver log tail:\n%s", userID, deviceID, err, c.LogTail(40))
	}
	c.Ed25519, c.Curve25519, c.CryptoVersion = started.Ed25519, started.Curve25519, started.CryptoVersion
	return c, nil
}

// readLoop reads the driver's stdout until it ends, then reaps the process and fails
// whatever is still waiting.
func (c *E2EEClient) readLoop(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var l e2eeLine
		if err := json.Unmarshal(line, &l); err != nil {
			fmt.Fprintf(c.logFile, "harness: unparsable driver stdout line: %s\n", line)
			continue
		}
		c.handleLine(&l)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(c.logFile, "harness: reading driver stdout: %v\n", err)
		// Drain so the process is not blocked on a full pipe while we wait for it.
		_, _ = io.Copy(io.Discard, stdout)
	}
	c.waitErr = c.cmd.Wait()
	fmt.Fprintf(c.logFile, "===== harness: e2ee driver exited: %v at %s =====\n", c.waitErr, time.Now().Format(time.RFC3339Nano))
	c.logFile.Close()
	c.mu.Lock()
	c.pending = map[int64]chan e2eeResponse{}
	c.mu.Unlock()
	close(c.done)
}

func (c *E2EEClient) handleLine(l *e2eeLine) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.Event == "" {
		if ch := c.pending[l.ID]; ch != nil {
			delete(c.pending, l.ID)
			ch <- e2eeResponse{ok: l.OK, result: l.Result, err: l.Error}
		}
		return
	}
	switch l.Event {
	case "message":
		m := E2EEMessage{
			RoomID:    l.RoomID,
			EventID:   l.EventID,
			Sender:    l.Sender,
			Type:      event.Type{Type: l.Type, Class: event.MessageEventType},
			Encrypted: l.Encrypted,
			Content:   l.Content,
			Timestamp: l.TS,
		}
		var body struct {
			MsgType event.MessageType `json:"msgtype"`
			Body    string            `json:"body"`
		}
		if json.Unmarshal(l.Content, &body) == nil {
			m.MsgType, m.Body = body.MsgType, body.Body
		}
		c.msgs = append(c.msgs, m)
	case "utd":
		c.utds = append(c.utds, E2EEUndecryptable{RoomID: l.RoomID, EventID: l.EventID, Sender: l.Sender, Reason: l.Reason})
	case "invite":
		c.invites = append(c.invites, Invite{RoomID: l.RoomID, Inviter: l.Inviter})
	default:
		return // "ready" and future additions
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// call sends one command and waits for its answer, ctx's end or the driver's exit. The
// driver keeps working on a command whose caller gave up; its answer is dropped.
func (c *E2EEClient) call(ctx context.Context, cmd string, args map[string]any, out any) error {
	reqID := c.nextID.Add(1)
	req := map[string]any{}
	for k, v := range args {
		req[k] = v
	}
	req["id"] = reqID
	req["cmd"] = cmd
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("e2ee driver %s: encoding request: %w", cmd, err)
	}
	ch := make(chan e2eeResponse, 1)
	c.mu.Lock()
	c.pending[reqID] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, reqID)
		c.mu.Unlock()
	}
	select {
	case <-c.done:
		forget()
		return fmt.Errorf("e2ee driver %s: %s", cmd, c.exitDescription())
	default:
	}
	c.writeMu.Lock()
	_, err = c.stdin.Write(append(data, '\n'))
	c.writeMu.Unlock()
	if err != nil {
		forget()
		return fmt.Errorf("e2ee driver %s: writing request: %w", cmd, err)
	}
	select {
	case resp := <-ch:
		if !resp.ok {
			return fmt.Errorf("e2ee driver %s: %s", cmd, resp.err)
		}
		if out != nil {
			if err := json.Unmarshal(resp.result, out); err != nil {
				return fmt.Errorf("e2ee driver %s: decoding result %s: %w", cmd, resp.result, err)
			}
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("e2ee driver %s for %s: %w", cmd, c.UserID, ctx.Err())
	case <-c.done:
		return fmt.Errorf("e2ee driver %s: %s", cmd, c.exitDescription())
	}
}

// exitDescription says how the driver ended; call only after done is closed.
func (c *E2EEClient) exitDescription() string {
	return fmt.Sprintf("driver for %s/%s exited (%v); log tail:\n%s", c.UserID, c.DeviceID, c.waitErr, tailFile(c.LogPath, 40))
}

// Close asks the driver to stop, waits up to 5 s for it to exit and kills its process
// group otherwise. It is safe to call more than once.
func (c *E2EEClient) Close() {
	c.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), e2eeStopGrace)
		defer cancel()
		_ = c.call(ctx, "stop", nil, nil)
		c.writeMu.Lock()
		_ = c.stdin.Close()
		c.writeMu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	})
}

// LogTail returns the last n lines of the driver's log.
func (c *E2EEClient) LogTail(n int) string {
	return tailFile(c.LogPath, n)
}

// E2EERoom describes a room for CreateRoom.
type E2EERoom struct {
	Name     string
	Invite   []id.UserID
	IsDirect bool
	// Preset defaults to trusted_private_chat for direct rooms, private_chat otherwise.
	Preset string
	// Unencrypted leaves m.room.encryption out of the initial state.
	Unencrypted bool
}

// CreateEncryptedRoom creates a room with m.room.encryption (m.megolm.v1.aes-sha2) in its
// initial state, inviting invite, and returns once the client is joined and its crypto
// treats the room as encrypted.
func (c *E2EEClient) CreateEncryptedRoom(ctx context.Context, invite []id.UserID, isDirect bool) (id.RoomID, error) {
	return c.CreateRoom(ctx, E2EERoom{Invite: invite, IsDirect: isDirect})
}

// CreateRoom creates a room as described and returns once the client is joined and, for
// an encrypted room, its crypto treats the room as encrypted.
func (c *E2EEClient) CreateRoom(ctx context.Context, room E2EERoom) (id.RoomID, error) {
	args := map[string]any{
		"invite":    nonNil(room.Invite),
		"is_direct": room.IsDirect,
		"encrypted": !room.Unencrypted,
	}
	if room.Name != "" {
		args["name"] = room.Name
	}
	if room.Preset != "" {
		args["preset"] = room.Preset
	}
	var res struct {
		RoomID id.RoomID `json:"room_id"`
	}
	if err := c.call(ctx, "create_room", args, &res); err != nil {
		return "", err
	}
	return res.RoomID, nil
}

func nonNil(users []id.UserID) []id.UserID {
	if users == nil {
		return []id.UserID{}
	}
	return users
}

// Join joins a room (by ID or alias) and returns once the client sees itself joined and,
// when the room is encrypted, its crypto knows. It returns the room ID.
func (c *E2EEClient) Join(ctx context.Context, roomIDOrAlias string) (id.RoomID, error) {
	var res struct {
		RoomID id.RoomID `json:"room_id"`
	}
	if err := c.call(ctx, "join", map[string]any{"room_id": roomIDOrAlias}, &res); err != nil {
		return "", err
	}
	return res.RoomID, nil
}

// WaitRoom waits until the client is joined to roomID (joined by someone else, e.g. a
// bridge's double puppet) and, when the room is encrypted, its crypto knows. It reports
// whether the room is encrypted.
func (c *E2EEClient) WaitRoom(ctx context.Context, roomID id.RoomID) (encrypted bool, err error) {
	var res struct {
		Encrypted bool `json:"encrypted"`
	}
	err = c.call(ctx, "wait_room", map[string]any{"room_id": roomID}, &res)
	return res.Encrypted, err
}

// WaitMember waits until this client's view of roomID shows userID with membership
// (join when empty). Senders share room keys with the members their client knows of.
func (c *E2EEClient) WaitMember(ctx context.Context, roomID id.RoomID, userID id.UserID, membership event.Membership) error {
	if membership == "" {
		membership = event.MembershipJoin
	}
	return c.call(ctx, "wait_member", map[string]any{"room_id": roomID, "user_id": userID, "membership": membership}, nil)
}

// WaitDeviceKeys waits until the client's crypto knows at least one device with keys for
// every user in userIDs, and returns the device IDs it knows. Call it before sending to
// someone whose device may have been created after this client first looked.
func (c *E2EEClient) WaitDeviceKeys(ctx context.Context, userIDs ...id.UserID) (map[id.UserID][]id.DeviceID, error) {
	var res struct {
		Devices map[id.UserID][]id.DeviceID `json:"devices"`
	}
	if err := c.call(ctx, "wait_devices", map[string]any{"user_ids": nonNil(userIDs)}, &res); err != nil {
		return nil, err
	}
	return res.Devices, nil
}

// SendText sends an m.text message to roomID, first waiting until the client is joined
// and, when the room is encrypted, until its crypto knows (so it never goes out in the
// clear by accident). It returns the event ID.
func (c *E2EEClient) SendText(ctx context.Context, roomID id.RoomID, body string) (id.EventID, error) {
	evtID, _, err := c.SendMessage(ctx, roomID, map[string]any{"msgtype": event.MsgText, "body": body})
	return evtID, err
}

// SendMessage sends an m.room.message with the given content like SendText and reports
// whether it was encrypted.
func (c *E2EEClient) SendMessage(ctx context.Context, roomID id.RoomID, content any) (id.EventID, bool, error) {
	var res struct {
		EventID   id.EventID `json:"event_id"`
		Encrypted bool       `json:"encrypted"`
	}
	if err := c.call(ctx, "send", map[string]any{"room_id": roomID, "content": content}, &res); err != nil {
		return "", false, err
	}
	return res.EventID, res.Encrypted, nil
}

// SendEvent sends a room event of any type (a reaction, say) like SendMessage.
func (c *E2EEClient) SendEvent(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) (id.EventID, error) {
	var res struct {
		EventID id.EventID `json:"event_id"`
	}
	err := c.call(ctx, "send", map[string]any{"room_id": roomID, "type": evtType.Type, "content": content}, &res)
	return res.EventID, err
}

// Redact redacts an event.
func (c *E2EEClient) Redact(ctx context.Context, roomID id.RoomID, target id.EventID) (id.EventID, error) {
	var res struct {
		EventID id.EventID `json:"event_id"`
	}
	err := c.call(ctx, "redact", map[string]any{"room_id": roomID, "event_id": target}, &res)
	return res.EventID, err
}

// BlacklistUnverified makes the client share room keys only with verified devices, as
// Element's "never send encrypted messages to unverified sessions" does: the others
// (the bridge's, which nobody verified) are told the key is withheld.
func (c *E2EEClient) BlacklistUnverified(ctx context.Context, on bool) error {
	return c.call(ctx, "blacklist_unverified", map[string]any{"on": on}, nil)
}

// Messages returns a snapshot of the events received in roomID so far, in arrival order.
func (c *E2EEClient) Messages(roomID id.RoomID) []E2EEMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []E2EEMessage
	for _, m := range c.msgs {
		if m.RoomID == roomID {
			out = append(out, m)
		}
	}
	return out
}

// Undecryptable returns the events of roomID that could not be decrypted on arrival.
func (c *E2EEClient) Undecryptable(roomID id.RoomID) []E2EEUndecryptable {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []E2EEUndecryptable
	for _, u := range c.utds {
		if u.RoomID == roomID {
			out = append(out, u)
		}
	}
	return out
}

// WaitMessage returns the first event received in roomID, including ones received before
// the call, for which match returns true. It blocks until one arrives, ctx ends or the
// driver exits; the error then summarises what the room did receive.
func (c *E2EEClient) WaitMessage(ctx context.Context, roomID id.RoomID, match func(E2EEMessage) bool) (E2EEMessage, error) {
	for {
		c.mu.Lock()
		for _, m := range c.msgs {
			if m.RoomID == roomID && match(m) {
				c.mu.Unlock()
				return m, nil
			}
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return E2EEMessage{}, fmt.Errorf("%s/%s waiting for a message in %s: %w; %s",
				c.UserID, c.DeviceID, roomID, ctx.Err(), c.roomSummary(roomID))
		case <-c.done:
			return E2EEMessage{}, fmt.Errorf("%s waiting for a message in %s: %s", c.UserID, roomID, c.exitDescription())
		}
	}
}

// WaitInvite returns the first room this client was invited to, including invitations
// received before the call, for which match returns true (nil matches any).
func (c *E2EEClient) WaitInvite(ctx context.Context, match func(roomID id.RoomID, inviter id.UserID) bool) (id.RoomID, error) {
	for {
		c.mu.Lock()
		for _, inv := range c.invites {
			if match == nil || match(inv.RoomID, inv.Inviter) {
				c.mu.Unlock()
				return inv.RoomID, nil
			}
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("%s/%s waiting for an invite: %w", c.UserID, c.DeviceID, ctx.Err())
		case <-c.done:
			return "", fmt.Errorf("%s waiting for an invite: %s", c.UserID, c.exitDescription())
		}
	}
}

// roomSummary lists the last 30 messages and every undecryptable event of a room, for
// timeout errors.
func (c *E2EEClient) roomSummary(roomID id.RoomID) string {
	msgs := c.Messages(roomID)
	utds := c.Undecryptable(roomID)
	var b strings.Builder
	fmt.Fprintf(&b, "the client received %d events there", len(msgs))
	if len(msgs) > 30 {
		msgs = msgs[len(msgs)-30:]
		b.WriteString(", the last 30")
	}
	if len(msgs) > 0 {
		b.WriteString(":")
	}
	for _, m := range msgs {
		fmt.Fprintf(&b, "\n  %s from %s encrypted=%t", m.Type.Type, m.Sender, m.Encrypted)
		if m.MsgType != "" {
			fmt.Fprintf(&b, " %s %q", m.MsgType, truncate(m.Body, 80))
		}
	}
	if len(utds) > 0 {
		fmt.Fprintf(&b, "\n%d could not be decrypted on arrival:", len(utds))
		for _, u := range utds {
			fmt.Fprintf(&b, "\n  %s from %s: %s", u.EventID, u.Sender, u.Reason)
		}
	}
	return b.String()
}

// E2EEText matches m.room.message events from sender whose body is body.
func E2EEText(sender id.UserID, body string) func(E2EEMessage) bool {
	return func(m E2EEMessage) bool {
		return m.Type.Type == event.EventMessage.Type && m.Sender == sender && m.Body == body
	}
}
