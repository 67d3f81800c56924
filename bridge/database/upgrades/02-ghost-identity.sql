-- v1 -> v2: Ghosts remember the remote account and real name their profile shows
ALTER TABLE ghost ADD COLUMN account TEXT NOT NULL DEFAULT '';
ALTER TABLE ghost ADD COLUMN real_name TEXT NOT NULL DEFAULT '';
