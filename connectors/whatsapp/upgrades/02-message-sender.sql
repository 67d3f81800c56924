-- v1 -> v2 (compatible with v1+): Who sent each bridged WhatsApp message
-- WhatsApp names a message by chat, ID and sender, and tells the sender only when the
-- message arrives: reaction removals, replies and group read receipts sent after a
-- restart need it from here. Rows are pruned after the connector's sender_retention.
-- Compatible with v1: a bridge of the previous version ignores the table, so going back
-- to it after an upgrade works.
CREATE TABLE whatsapp_message_sender (
	login_id   TEXT   NOT NULL,
	chat_id    TEXT   NOT NULL,
	message_id TEXT   NOT NULL,
	-- The sender's JID exactly as WhatsApp sent it: phone-number or hidden (LID) form.
	sender     TEXT   NOT NULL,
	-- When the row was written, in Unix milliseconds; what retention counts from.
	created_at BIGINT NOT NULL,
	PRIMARY KEY (login_id, chat_id, message_id)
);
CREATE INDEX whatsapp_message_sender_created ON whatsapp_message_sender (created_at);
