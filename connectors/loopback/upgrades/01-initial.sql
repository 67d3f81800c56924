-- v0 -> v1: The loopnet event cursor
-- Before versioned migrations the connector created this table itself at start, so a
-- database may already hold it, with its row, and no loopback_version: this step runs
-- there too and must stay IF NOT EXISTS and v0 -> v1. Later changes go in new files.
CREATE TABLE IF NOT EXISTS loopback_cursor (
	id  INTEGER PRIMARY KEY,
	seq BIGINT  NOT NULL
);
