-- v0 -> v1: Disappearing-message deadlines and chat timers
-- Before versioned migrations the connector created these tables itself at start, so a
-- database may already hold them, with rows, and no whatsapp_version: this step runs
-- there too and must stay IF NOT EXISTS and v0 -> v1. Later changes go in new files.
CREATE TABLE IF NOT EXISTS whatsapp_disappearing (
	chat_key   TEXT   NOT NULL,
	receiver   TEXT   NOT NULL,
	message_id TEXT   NOT NULL,
	expires_at BIGINT NOT NULL,
	PRIMARY KEY (chat_key, message_id)
);
CREATE INDEX IF NOT EXISTS whatsapp_disappearing_expiry ON whatsapp_disappearing (expires_at);

CREATE TABLE IF NOT EXISTS whatsapp_chat_timer (
	chat_key TEXT    NOT NULL PRIMARY KEY,
	receiver TEXT    NOT NULL,
	seconds  INTEGER NOT NULL
);
