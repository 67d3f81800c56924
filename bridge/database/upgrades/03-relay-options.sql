-- v2 -> v3: Relay rooms carry their own relay options (formats, prefix policy)
ALTER TABLE room ADD COLUMN relay_options TEXT NOT NULL DEFAULT '';
