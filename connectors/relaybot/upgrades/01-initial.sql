-- v0 -> v1: Relay conversations, their assignees, greeted contacts and lobbies
-- Before versioned migrations the relay bot created these tables itself at start, so a
-- database may already hold them, with rows, and no relaybot_version: this step runs
-- there too and must stay IF NOT EXISTS and v0 -> v1. Later changes go in new files.
CREATE TABLE IF NOT EXISTS relaybot_conversation (
	room_id     TEXT    PRIMARY KEY,
	account     TEXT    NOT NULL,
	connector   TEXT    NOT NULL,
	chat_id     TEXT    NOT NULL,
	receiver    TEXT    NOT NULL,
	contact     TEXT    NOT NULL,
	opened_by   TEXT    NOT NULL DEFAULT '',
	login_owner TEXT    NOT NULL DEFAULT '',
	ready       INTEGER NOT NULL DEFAULT 0,
	created_at  BIGINT  NOT NULL,
	closed_at   BIGINT
);

CREATE TABLE IF NOT EXISTS relaybot_assignee (
	room_id TEXT NOT NULL REFERENCES relaybot_conversation (room_id) ON DELETE CASCADE,
	user_id TEXT NOT NULL,
	PRIMARY KEY (room_id, user_id)
);

CREATE TABLE IF NOT EXISTS relaybot_greeted (
	account   TEXT NOT NULL,
	connector TEXT NOT NULL,
	chat_id   TEXT NOT NULL,
	receiver  TEXT NOT NULL,
	PRIMARY KEY (account, connector, chat_id, receiver)
);

CREATE TABLE IF NOT EXISTS relaybot_lobby (
	account TEXT PRIMARY KEY,
	room_id TEXT NOT NULL
);
