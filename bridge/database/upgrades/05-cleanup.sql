-- v4 -> v5: When a ghost was made, so unused ones can be removed after a while
-- 0 means "before this version": the cleanup stamps such rows with the time it first
-- sees them, so their clock starts at the upgrade rather than at once.
ALTER TABLE ghost ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
