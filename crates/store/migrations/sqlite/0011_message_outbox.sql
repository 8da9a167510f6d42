-- Messages once per fact (issue 11, renewals): a reminder, a failed charge or a lapse is
-- stored at most once per agreement, period and kind. The key is optional (one-time
-- codes have none); a unique index allows any number of NULLs on both engines.
ALTER TABLE user_messages ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX user_messages_dedupe ON user_messages (dedupe_key);
