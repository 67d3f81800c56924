-- v3 -> v4: What a restart must not forget: new portals whose policy connectors were not told yet, and login flows in progress
-- The NewPortal (JSON) that plugins (relaybot) must still be told about;
-- empty once they were. Written with the room row, so a crash in between loses nothing.
ALTER TABLE room ADD COLUMN pending_watch TEXT NOT NULL DEFAULT '';
-- A user's running login flow. It cannot outlive the process (its remote half is a live
-- connection), but the user must be told it stopped, and an answer to a secret
-- question that arrives after it stopped must still be deleted, never read as a command.
CREATE TABLE login_flow (
	mxid       TEXT    PRIMARY KEY,
	room_id    TEXT    NOT NULL,
	connector  TEXT    NOT NULL,
	secret     BOOLEAN NOT NULL DEFAULT false,
	notified   BOOLEAN NOT NULL DEFAULT false,
	started_at BIGINT  NOT NULL
);
