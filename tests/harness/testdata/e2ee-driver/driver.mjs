// E2EE test driver: one Matrix device (matrix-js-sdk + Rust crypto, keys in memory) played
// from Go (tests/harness/e2eeclient.go) over newline-delimited JSON.
//
// stdin, one request per line:   {"id": 1, "cmd": "start", ...arguments}
// stdout, one answer per request: {"id": 1, "ok": true, "result": {...}}
//                                 {"id": 1, "ok": false, "error": "..."}
// stdout, unsolicited lines:      {"event": "message", ...} (a timeline event, decrypted)
//                                 {"event": "utd", ...}     (could not decrypt, for now)
//                                 {"event": "invite", "room_id", "inviter"}
//
// Only protocol lines go to stdout: every console method (which the SDK's logger and the
// Rust crypto's tracing both call) is sent to stderr. Requests run concurrently; waits
// inside a request have no timeout of their own (the Go side bounds them with a context and
// kills the process on Close). The process exits when stdin closes.

import { Console } from "node:console";
import * as readline from "node:readline";

// Before anything else logs: console.* -> stderr. The SDK's loglevel logger and the WASM
// glue look the console methods up at call time, so replacing them here is enough.
const errConsole = new Console({ stdout: process.stderr, stderr: process.stderr });
for (const m of ["log", "info", "debug", "trace", "warn", "error", "dir", "table", "group", "groupCollapsed"]) {
  console[m] = (...args) => errConsole[m](...args);
}

const sdk = await import("matrix-js-sdk");

const VERBOSE = process.env.E2EE_DRIVER_VERBOSE === "1";
const ts = () => new Date().toISOString();
const log = (...args) => errConsole.error(ts(), "[driver]", ...args);

// The SDK logger: debug/trace are dropped unless E2EE_DRIVER_VERBOSE=1 (the Rust tracing,
// which logs at debug through console.debug, stays on: it goes to stderr anyway).
function makeLogger(prefix) {
  const out = (level) => (...args) => errConsole.error(ts(), level, prefix, ...args);
  const nop = () => {};
  const l = {
    trace: VERBOSE ? out("TRACE") : nop,
    debug: VERBOSE ? out("DEBUG") : nop,
    info: out("INFO"),
    log: out("INFO"),
    warn: out("WARN"),
    error: out("ERROR"),
    getChild: (p) => makeLogger(prefix + p),
  };
  return l;
}

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

let client = null;
let stopping = false;
const emitted = new Set(); // event IDs already sent as "message"
const utdSent = new Set(); // event IDs already reported as "utd"

// ---- events ----

function eventLine(ev) {
  return {
    room_id: ev.getRoomId(),
    event_id: ev.getId(),
    sender: ev.getSender(),
    type: ev.getType(),
    content: ev.getContent(),
    encrypted: ev.isEncrypted(),
    origin_server_ts: ev.getTs(),
  };
}

function emitMessage(ev) {
  const eventId = ev.getId();
  if (!eventId || eventId.startsWith("~") || emitted.has(eventId)) return;
  if (ev.isEncrypted() && (ev.isBeingDecrypted() || ev.isDecryptionFailure())) return;
  emitted.add(eventId);
  send({ event: "message", ...eventLine(ev) });
}

function emitUTD(ev) {
  const eventId = ev.getId();
  if (!eventId || emitted.has(eventId) || utdSent.has(eventId)) return;
  utdSent.add(eventId);
  send({
    event: "utd",
    room_id: ev.getRoomId(),
    event_id: eventId,
    sender: ev.getSender(),
    reason: String(ev.decryptionFailureReason ?? ""),
    error: String(ev.getContent()?.body ?? ""),
  });
}

async function onTimeline(ev, room, toStartOfTimeline, removed) {
  if (removed || ev.isState() || ev.status) return; // state, or our own local echo
  try {
    if (ev.isEncrypted()) {
      await client.decryptEventIfNeeded(ev);
      if (ev.isDecryptionFailure()) {
        // The SDK retries when the key arrives and emits Event.decrypted again.
        emitUTD(ev);
        return;
      }
    }
    emitMessage(ev);
  } catch (e) {
    log("handling timeline event", ev.getId(), e);
  }
}

function onDecrypted(ev) {
  if (ev.isState() || ev.status || !ev.getRoomId()) return;
  if (ev.isDecryptionFailure()) {
    emitUTD(ev);
    return;
  }
  emitMessage(ev);
}

function onMembership(ev, member) {
  if (member.userId === client.getUserId() && member.membership === "invite") {
    send({ event: "invite", room_id: member.roomId, inviter: ev.getSender() });
  }
}

// ---- helpers ----

function needClient() {
  if (!client) throw new Error("not started");
  return client;
}

// waitUntil polls cond every 50 ms until it returns a truthy value, which it returns.
async function waitUntil(cond) {
  for (;;) {
    if (stopping) throw new Error("stopping");
    const v = await cond();
    if (v) return v;
    await sleep(50);
  }
}

// roomReady: we are joined, and if the room has m.room.encryption in its state the crypto
// backend has configured it (sending before that would throw or go out in the clear).
async function roomReady(roomId) {
  const room = client.getRoom(roomId);
  if (!room || room.getMyMembership() !== "join") return false;
  if (!room.hasEncryptionStateEvent()) return { encrypted: false };
  if (!(await client.getCrypto().isEncryptionEnabledInRoom(roomId))) return false;
  return { encrypted: true };
}

// ownKeysPublished: the homeserver serves our device keys and holds one-time keys for us,
// so another device can start an Olm session with us as soon as start returns.
async function ownKeysPublished() {
  const userId = client.getUserId();
  const deviceId = client.getDeviceId();
  try {
    const q = await client.http.authedRequest(sdk.Method.Post, "/keys/query", undefined, {
      device_keys: { [userId]: [deviceId] },
    });
    if (!q?.device_keys?.[userId]?.[deviceId]) return false;
    const u = await client.http.authedRequest(sdk.Method.Post, "/keys/upload", undefined, {});
    const counts = u?.one_time_key_counts ?? {};
    return Object.values(counts).some((n) => n > 0);
  } catch (e) {
    log("checking own keys:", e?.message ?? e);
    return false;
  }
}

// ---- commands ----

const commands = {
  async start(a) {
    if (client) throw new Error("already started");
    for (const k of ["homeserver", "user_id", "access_token", "device_id"]) {
      if (!a[k]) throw new Error(`start: ${k} is required`);
    }
    const logger = makeLogger(`[${a.user_id}/${a.device_id}]`);
    client = sdk.createClient({
      baseUrl: a.homeserver,
      userId: a.user_id,
      deviceId: a.device_id,
      accessToken: a.access_token,
      logger,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    log("start: crypto ready");
    client.on(sdk.RoomEvent.Timeline, onTimeline);
    client.on(sdk.MatrixEventEvent.Decrypted, onDecrypted);
    client.on(sdk.RoomMemberEvent.Membership, onMembership);
    const prepared = new Promise((resolve) => {
      const h = (state) => {
        if (state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing) {
          client.off(sdk.ClientEvent.Sync, h);
          resolve();
        } else if (state === sdk.SyncState.Error) {
          log("sync error (the SDK retries)");
        }
      };
      client.on(sdk.ClientEvent.Sync, h);
    });
    await client.startClient({ initialSyncLimit: 50 });
    await prepared;
    log("start: first sync done");
    await waitUntil(ownKeysPublished);
    log("start: device and one-time keys published");
    const crypto = client.getCrypto();
    const keys = await crypto.getOwnDeviceKeys();
    return {
      user_id: client.getUserId(),
      device_id: client.getDeviceId(),
      ed25519: keys.ed25519,
      curve25519: keys.curve25519,
      crypto_version: crypto.getVersion(),
    };
  },

  async create_room(a) {
    const c = needClient();
    const isDirect = !!a.is_direct;
    const req = {
      preset: a.preset ?? (isDirect ? "trusted_private_chat" : "private_chat"),
      invite: a.invite ?? [],
      is_direct: isDirect,
      initial_state: [
        { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
      ],
    };
    if (a.name) req.name = a.name;
    if (a.encrypted === false) req.initial_state = [];
    const { room_id: roomId } = await c.createRoom(req);
    const ready = await waitUntil(() => roomReady(roomId));
    return { room_id: roomId, encrypted: ready.encrypted };
  },

  async join(a) {
    const c = needClient();
    if (!a.room_id) throw new Error("join: room_id is required");
    const room = await c.joinRoom(a.room_id);
    const roomId = room?.roomId ?? a.room_id;
    const ready = await waitUntil(() => roomReady(roomId));
    return { room_id: roomId, encrypted: ready.encrypted };
  },

  // wait_room: wait until we are joined to room_id and, if it is encrypted, crypto knows.
  async wait_room(a) {
    needClient();
    const ready = await waitUntil(() => roomReady(a.room_id));
    return { encrypted: ready.encrypted };
  },

  // wait_member: wait until this client's view of room_id has user_id with membership
  // (default "join").
  async wait_member(a) {
    const c = needClient();
    const want = a.membership ?? "join";
    await waitUntil(() => c.getRoom(a.room_id)?.getMember(a.user_id)?.membership === want);
    return {};
  },

  // wait_devices: wait until the crypto backend knows at least one device with keys for each
  // of user_ids (downloading the list for users it does not track yet).
  async wait_devices(a) {
    const c = needClient();
    const users = a.user_ids ?? [];
    const result = {};
    await waitUntil(async () => {
      const map = await c.getCrypto().getUserDeviceInfo(users, true);
      for (const u of users) {
        const devices = map.get(u);
        if (!devices || devices.size === 0) return false;
        result[u] = [...devices.keys()];
      }
      return true;
    });
    return { devices: result };
  },

  // send: content as given (msgtype and body at least), type m.room.message.
  async send(a) {
    const c = needClient();
    if (!a.room_id) throw new Error("send: room_id is required");
    const ready = await waitUntil(() => roomReady(a.room_id));
    if (a.require_encrypted && !ready.encrypted) throw new Error(`room ${a.room_id} is not encrypted`);
    const res = await c.sendEvent(a.room_id, a.type ?? "m.room.message", a.content);
    return { event_id: res.event_id, encrypted: ready.encrypted };
  },

  async send_text(a) {
    return commands.send({ ...a, content: { msgtype: a.msgtype ?? "m.text", body: a.body } });
  },

  // redact: redact event_id in room_id.
  async redact(a) {
    const c = needClient();
    const res = await c.redactEvent(a.room_id, a.event_id, undefined, a.reason ? { reason: a.reason } : undefined);
    return { event_id: res.event_id };
  },

  // blacklist_unverified: share room keys only with verified devices from now on (as
  // Element's "never send to unverified sessions"): other devices get m.room_key.withheld.
  async blacklist_unverified(a) {
    needClient().getCrypto().globalBlacklistUnverifiedDevices = a.on !== false;
    return {};
  },

  async stop() {
    stopping = true;
    if (client) {
      client.stopClient();
    }
    setTimeout(() => process.exit(0), 50);
    return {};
  },
};

async function handle(line) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    log("bad request line:", line);
    return;
  }
  const fn = commands[req.cmd];
  if (!fn) {
    send({ id: req.id, ok: false, error: `unknown command ${JSON.stringify(req.cmd)}` });
    return;
  }
  try {
    const result = await fn(req);
    send({ id: req.id, ok: true, result: result ?? {} });
  } catch (e) {
    const msg = e?.data?.error ? `${e.message} (${e.data.errcode}: ${e.data.error})` : String(e?.message ?? e);
    log(`${req.cmd} failed:`, e);
    send({ id: req.id, ok: false, error: msg });
  }
}

process.on("unhandledRejection", (e) => log("unhandled rejection:", e));

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  if (line.trim() !== "") handle(line);
});
rl.on("close", () => {
  // The Go side is gone (or closed stdin on purpose): do not outlive it.
  stopping = true;
  try {
    client?.stopClient();
  } catch {}
  process.exit(0);
});
send({ event: "ready", node: process.version });
