package bridge

// End-to-end encryption: the bot's own device (appservice login, MSC2778), its Olm
// machine with state in the bridge's database, and the bot's /sync for to-device
// traffic (room keys, device lists), which Dendrite never pushes to appservices.
// Received m.room.encrypted events are decrypted in their room's lane
// (tonetwork_events.go); everything sent into an encrypted room is encrypted at the send
// seam (tomatrix_send.go). Built with the pure-Go goolm tag.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// cryptoHelper is the bot's end-to-end encryption.
type cryptoHelper struct {
	br     *Bridge
	log    zerolog.Logger
	client *mautrix.Client
	store  *cryptoStore
	mach   *crypto.OlmMachine
	// roomLocks serialise encrypting (and sharing a room key) per room, so two lanes
	// never share two sessions for one room at once.
	roomLocks keyedMutex
}

// cryptoStateStore answers the Olm machine's room questions from the appservice state
// store. Its FindSharedRooms reads the rooms' own encryption state: the store's
// "bridge" variant expects a portal table of another layout than ours.
type cryptoStateStore struct{ *stateStore }

// FindSharedRooms lists the encrypted rooms a user shares with the bot.
func (s cryptoStateStore) FindSharedRooms(ctx context.Context, userID id.UserID) ([]id.RoomID, error) {
	rows, err := s.Query(ctx, `SELECT mx_user_profile.room_id FROM mx_user_profile
		JOIN mx_room_state ON mx_room_state.room_id=mx_user_profile.room_id
		WHERE mx_user_profile.user_id=$1 AND mx_room_state.encryption IS NOT NULL`, userID)
	return dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[id.RoomID], err).AsList()
}

// startCrypto gives the bot a device when the config allows encryption. Without one
// (the homeserver offers no appservice login), the bridge runs without encryption
// unless it is required.
func (br *Bridge) startCrypto(ctx context.Context) error {
	cfg := br.Config.Bridge.Encryption
	if !cfg.Allow {
		return nil
	}
	c, err := newCryptoHelper(ctx, br)
	if err != nil {
		if cfg.Require {
			return fmt.Errorf("bridge.encryption.require is set, but the bot has no device: %w", err)
		}
		br.Log.Warn().Err(err).Msg("The bot has no device: encrypted rooms will not be bridged")
		return nil
	}
	br.crypto = c
	return nil
}

func newCryptoHelper(ctx context.Context, br *Bridge) (*cryptoHelper, error) {
	log := br.Log.With().Str("component", "crypto").Logger()
	if br.DB.Dialect == dbutil.Postgres {
		// mautrix's crypto store asks for the driver's array type this way.
		crypto.PostgresArrayWrapper = pq.Array
	}
	// The pickle key protects the Olm account and sessions at rest. It comes from the
	// tokens in the config, so the database alone does not give the keys away.
	pickle := sha256.Sum256([]byte("passerelle olm pickle\x00" + br.Config.AppService.ASToken + "\x00" + br.Config.AppService.HSToken))
	store := newCryptoStore(crypto.NewSQLCryptoStore(br.DB.Database, dbutil.ZeroLogger(log.With().Str("db_section", "crypto").Logger()),
		"passerelle_bot", "", pickle[:]))
	if err := store.DB.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("upgrading the crypto store: %w", err)
	}
	known, err := store.FindDeviceID(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the bot's device: %w", err)
	}
	client := br.AS.NewMautrixClient(br.BotMXID())
	flows, err := client.GetLoginFlows(ctx)
	if err != nil {
		return nil, fmt.Errorf("asking the homeserver how to log in: %w", err)
	} else if !flows.HasFlow(mautrix.AuthTypeAppservice) {
		return nil, errors.New("the homeserver offers no appservice login (m.login.application_service, MSC2778)")
	}
	resp, err := client.Login(ctx, &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypeAppservice,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: br.BotMXID().String()},
		DeviceID:                 known,
		InitialDeviceDisplayName: br.Config.AppService.Bot.Displayname,
		StoreCredentials:         true,
	})
	if err != nil {
		return nil, fmt.Errorf("logging the bot's device in: %w", err)
	}
	store.DeviceID = resp.DeviceID
	if known != "" && known != resp.DeviceID {
		log.Warn().Str("old_device", known.String()).Str("device", resp.DeviceID.String()).
			Msg("The bot's device was replaced on the homeserver: members' clients will see a new device")
	}
	c := &cryptoHelper{br: br, log: log, client: client, store: store}
	c.mach = crypto.NewOlmMachine(client, &c.log, store, cryptoStateStore{br.stateStore()})
	// The ratchet bookkeeping serves deleting used keys, which the bridge does not do;
	// without it a received message costs no rewrite of its room key in the database.
	c.mach.DisableRatchetTracking = true
	if err = c.mach.Load(ctx); err != nil {
		return nil, fmt.Errorf("loading the bot's crypto state: %w", err)
	}
	if err = c.mach.ShareKeys(ctx, -1); err != nil {
		return nil, fmt.Errorf("uploading the bot's device keys: %w", err)
	}
	c.checkOwnKeys(ctx)
	log.Info().Str("device", resp.DeviceID.String()).Msg("End-to-end encryption ready")
	return c, nil
}

// checkOwnKeys makes sure the server has the bot's device keys. When they are gone
// (the device was deleted and the login made it again), the same keys are uploaded
// again and a warning says members' clients will see the device anew; keys on the
// server that are not the bot's (reset from elsewhere) are reported, as nobody can
// encrypt for the bot until an admin logs its device out.
func (c *cryptoHelper) checkOwnKeys(ctx context.Context) {
	bot, device := c.br.BotMXID(), c.store.DeviceID
	resp, err := c.client.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bot: {device}}})
	if err != nil {
		c.log.Warn().Err(err).Msg("Checking the bot's device keys on the server failed")
		return
	}
	own := c.mach.GetAccount().SigningKey()
	keys, ok := resp.DeviceKeys[bot][device]
	switch {
	case ok && keys.Keys.GetEd25519(device) == own:
		return
	case ok && keys.Keys.GetEd25519(device) != "":
		c.log.Error().Str("device", device.String()).
			Msg("The server holds other keys for the bot's device than the bridge's: encrypted rooms will not work. Log the device out on the homeserver and restart the bridge")
		return
	}
	c.log.Warn().Str("device", device.String()).
		Msg("The server had lost the bot's device keys (device deleted or keys reset): uploading them again; members who verified the bridge may have to verify it again")
	c.mach.GetAccount().Shared = false
	if err = c.mach.ShareKeys(ctx, -1); err != nil {
		c.log.Error().Err(err).Msg("Uploading the bot's device keys again failed: encrypted rooms will not work")
	}
}

// syncFilter keeps the bot's /sync to what encryption needs: to-device events, device
// list changes and one-time key counts, never room traffic (the appservice gets that).
func syncFilter() *mautrix.Filter {
	all := []event.Type{{Type: "*"}}
	none := &mautrix.FilterPart{NotTypes: all}
	return &mautrix.Filter{Presence: none, AccountData: none,
		Room: &mautrix.RoomFilter{Ephemeral: none, AccountData: none, State: none, Timeline: none}}
}

// syncLoop follows the bot's /sync for to-device traffic. The position is stored only
// after a response was processed, so a crash never skips a room key (an Olm message
// seen twice is recognised by the store).
func (c *cryptoHelper) syncLoop(ctx context.Context) {
	since, err := c.store.GetNextBatch(ctx)
	if err != nil {
		c.log.Warn().Err(err).Msg("Reading the /sync position failed; starting afresh")
	}
	filterID := ""
	delay := time.Second
	var stored time.Time
	for ctx.Err() == nil {
		if filterID == "" {
			if resp, err := c.client.CreateFilter(ctx, syncFilter()); err == nil {
				filterID = resp.FilterID
			} else {
				c.log.Warn().Err(err).Msg("Creating the /sync filter failed")
			}
		}
		resp, err := c.client.SyncRequest(ctx, 30000, since, filterID, false, event.PresenceOffline)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn().Err(err).Dur("retry_in", delay).Msg("The bot's /sync failed")
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, time.Minute)
			continue
		}
		delay = time.Second
		c.mach.ProcessSyncResponse(ctx, resp, since)
		since = resp.NextBatch
		// The homeserver wakes the /sync for every event in the bot's rooms, which the
		// filter then leaves out: a response with nothing for crypto moves the stored
		// position only now and then, so bridged messages cost no write here.
		if !carriesCrypto(resp) {
			// During a busy stretch such wake-ups come once per bridged message; a
			// short pause lets one request cover many of them. Room keys sent
			// meanwhile are returned at once by the next request.
			select {
			case <-ctx.Done():
				return
			case <-time.After(emptySyncPause):
			}
			if time.Since(stored) < syncPositionEvery {
				continue
			}
		}
		if err = c.store.PutNextBatch(ctx, since); err != nil {
			c.log.Warn().Err(err).Msg("Storing the /sync position failed")
		} else {
			stored = time.Now()
		}
	}
}

// syncPositionEvery is how stale the stored /sync position may get while responses
// bring nothing; a restart then asks again from there, which costs only a larger
// empty response.
const syncPositionEvery = 5 * time.Minute

// emptySyncPause is the wait after a /sync response that brought nothing for crypto.
const emptySyncPause = 200 * time.Millisecond

// carriesCrypto tells whether a /sync response brought anything whose position must
// be stored: to-device events (room keys) or device-list changes.
func carriesCrypto(resp *mautrix.RespSync) bool {
	return len(resp.ToDevice.Events) > 0 || len(resp.DeviceLists.Changed) > 0 || len(resp.DeviceLists.Left) > 0
}

// encrypt turns an event into m.room.encrypted for a room, sharing a room key with the
// members' devices first when there is none (or it expired, or missed someone).
func (c *cryptoHelper) encrypt(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) (*event.EncryptedEventContent, error) {
	unlock := c.roomLocks.Lock(roomID.String())
	defer unlock()
	enc, err := c.mach.EncryptMegolmEvent(ctx, roomID, evtType, content)
	if errors.Is(err, crypto.ErrNoGroupSession) || errors.Is(err, crypto.ErrSessionExpired) || errors.Is(err, crypto.ErrSessionNotShared) {
		members, merr := c.keyRecipients(ctx, roomID)
		if merr != nil {
			return nil, fmt.Errorf("listing the room's members to share a key: %w", merr)
		}
		if err = c.mach.ShareGroupSession(ctx, roomID, members); err != nil {
			return nil, fmt.Errorf("sharing the room key: %w", err)
		}
		enc, err = c.mach.EncryptMegolmEvent(ctx, roomID, evtType, content)
	}
	if err != nil {
		return nil, fmt.Errorf("encrypting: %w", err)
	}
	return enc, nil
}

// keyRecipients lists who gets a new room key: the room's joined and invited members
// as the homeserver has them now. The transaction stream alone would miss someone who
// joined a moment ago (their join not delivered yet) and leave them unable to read
// what the bridge sends next; asking costs one request per new key, not per message.
func (c *cryptoHelper) keyRecipients(ctx context.Context, roomID id.RoomID) ([]id.UserID, error) {
	// The bot's client writes the answer into the state store (mautrix does it for
	// every members request), replacing what it had for those memberships.
	if _, err := c.br.AS.BotIntent().Members(ctx, roomID, mautrix.ReqMembers{NotMembership: event.MembershipLeave}); err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Msg("Asking the homeserver for the room's members failed; sharing with the members known")
	}
	return c.br.AS.StateStore.GetRoomJoinedOrInvitedMembers(ctx, roomID)
}

// decrypt reads a received m.room.encrypted event. An event whose key has not arrived
// is waited for briefly, its key asked for from the sender's devices, and then retried
// by the queue until bridge.encryption.key_wait has passed since it was sent; the
// queue keeps it across restarts meanwhile.
func (c *cryptoHelper) decrypt(ctx context.Context, evt *event.Event) (*event.Event, error) {
	decrypted, err := c.mach.DecryptMegolmEvent(ctx, evt)
	if err == nil {
		return decrypted, nil
	}
	content, _ := evt.Content.Parsed.(*event.EncryptedEventContent)
	if errors.Is(err, crypto.ErrNoSessionFound) && content != nil &&
		c.mach.WaitForSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, 5*time.Second) {
		decrypted, err = c.mach.DecryptMegolmEvent(ctx, evt)
		if err == nil {
			return decrypted, nil
		}
	}
	if errors.Is(err, crypto.ErrGroupSessionWithheld) {
		// The sender's device decided the bridge may not read it (Element's "never
		// send to unverified sessions", say): waiting would not help.
		var withheld *event.RoomKeyWithheldEventContent
		if content != nil {
			withheld, _ = c.store.GetWithheldGroupSession(ctx, evt.RoomID, content.SessionID)
		}
		return nil, userErrorf("the bridge could not decrypt it: your device withheld the key from the bridge (%s). "+
			"If your client sends keys only to verified devices, verify the bridge's device or allow unverified ones in this room", withheldReason(withheld))
	}
	if !errors.Is(err, crypto.ErrNoSessionFound) || content == nil {
		c.log.Debug().Err(err).Str("event_id", evt.ID.String()).Msg("Decryption failed")
		return nil, userErrorf("the bridge could not decrypt it")
	}
	if time.Since(time.UnixMilli(evt.Timestamp)) > c.br.Config.Bridge.Encryption.KeyWait.Std() {
		return nil, userErrorf("the bridge could not decrypt it: its key never arrived")
	}
	if rerr := c.mach.SendRoomKeyRequest(ctx, evt.RoomID, content.SenderKey, content.SessionID, "",
		map[id.UserID][]id.DeviceID{evt.Sender: {"*"}}); rerr != nil {
		c.log.Debug().Err(rerr).Msg("Asking for a room key failed")
	}
	return nil, fmt.Errorf("the room key for %s has not arrived yet", evt.ID)
}

// withheldReason says why a key was withheld, in the sender's device's words when it
// gave them.
func withheldReason(w *event.RoomKeyWithheldEventContent) string {
	switch {
	case w == nil:
		return "no reason given"
	case w.Reason != "":
		return fmt.Sprintf("%s: %s", w.Code, w.Reason)
	default:
		return string(w.Code)
	}
}

// learnRoom fills the state store with what encryption needs of a room the bot just
// joined: whether it is encrypted (the event came before the bot) and who is in it
// (their devices get the room keys).
func (br *Bridge) learnRoom(ctx context.Context, roomID id.RoomID) {
	bot := br.AS.BotIntent()
	var enc event.EncryptionEventContent
	if err := bot.StateEvent(ctx, roomID, event.StateEncryption, "", &enc); err == nil && enc.Algorithm != "" {
		if err = br.AS.StateStore.SetEncryptionEvent(ctx, roomID, &enc); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("Recording the room's encryption failed")
		}
	}
	members, err := bot.JoinedMembers(ctx, roomID)
	if err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Msg("Reading the room's members failed")
		return
	}
	for user := range members.Joined {
		if err = br.AS.StateStore.SetMembership(ctx, roomID, user, event.MembershipJoin); err != nil {
			zerolog.Ctx(ctx).Debug().Err(err).Msg("Recording a member failed")
		}
	}
}

// cannotReadRoom says whether a room is encrypted while the bridge has no encryption
// (bridge.encryption.allow off, or no device); it then says so in the room, in clear
// text, once per occasion (the bot joining, the room turning encryption on): the only
// clear text the bridge ever sends into an encrypted room, and no room content.
func (br *Bridge) cannotReadRoom(ctx context.Context, roomID id.RoomID) bool {
	if br.crypto != nil {
		return false
	}
	if encrypted, err := br.AS.StateStore.IsEncrypted(ctx, roomID); err != nil || !encrypted {
		return false
	}
	content := &event.MessageEventContent{MsgType: event.MsgNotice,
		Body: "This room is end-to-end encrypted, and this bridge is not set up to read encrypted rooms: nothing here will be bridged. An admin can allow it (bridge.encryption.allow)."}
	if _, err := br.AS.BotIntent().SendMessageEvent(ctx, roomID, event.EventMessage, content); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Telling an encrypted room the bridge cannot read it failed")
	}
	return true
}

// checkRoomEncryption refuses to link a room whose encryption does not fit the
// bridge: an encrypted room when the bridge has no encryption (nothing could be read or
// written there), a room without encryption when the config requires it.
func (br *Bridge) checkRoomEncryption(ctx context.Context, roomID id.RoomID) error {
	encrypted, err := br.AS.StateStore.IsEncrypted(ctx, roomID)
	if err != nil {
		return fmt.Errorf("checking the room's encryption: %w", err)
	}
	if encrypted && br.crypto == nil {
		return userErrorf("this room is end-to-end encrypted, and this bridge is not set up to read encrypted rooms")
	}
	if !encrypted && br.Config.Bridge.Encryption.Require {
		return userErrorf("this room is not end-to-end encrypted, and this bridge only bridges encrypted rooms: turn on encryption in the room's settings")
	}
	return nil
}
