-- Issue 13: the interaction log for people (web UI and REST API). The read model's indexes,
-- and who downloaded which stored message.

-- Every download of a stored message, recorded before its bytes leave (who, when, which).
CREATE TABLE stored_message_access (
    id                bigserial PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    who               text NOT NULL,
    stored_message_id bigint NOT NULL REFERENCES stored_message (id),
    action            text NOT NULL CHECK (action IN ('download'))
);
CREATE INDEX stored_message_access_message ON stored_message_access (stored_message_id, at);

-- Newest first is ORDER BY coalesce(interaction_at, '-infinity') DESC, entry_no DESC: an entry
-- without a date sorts as the oldest, and entry_no breaks ties, so the key is a total order
-- and keyset pagination has no gaps or repeats. Queries must spell the key exactly so.
CREATE INDEX interaction_log_entry_newest ON interaction_log_entry
    ((coalesce(interaction_at, '-infinity'::timestamptz)) DESC, entry_no DESC);
-- One per filter a timeline starts from: the first page is an index range, no sort. They
-- supersede 0001's (contact_no, interaction_at) and (salesperson_code, interaction_at).
DROP INDEX interaction_log_entry_contact;
DROP INDEX interaction_log_entry_salesperson;
CREATE INDEX interaction_log_entry_contact_newest ON interaction_log_entry
    (contact_no, (coalesce(interaction_at, '-infinity'::timestamptz)) DESC, entry_no DESC);
CREATE INDEX interaction_log_entry_company_newest ON interaction_log_entry
    (contact_company_no, (coalesce(interaction_at, '-infinity'::timestamptz)) DESC, entry_no DESC);
CREATE INDEX interaction_log_entry_salesperson_newest ON interaction_log_entry
    (salesperson_code, (coalesce(interaction_at, '-infinity'::timestamptz)) DESC, entry_no DESC);

-- Text in the subject: words (and word prefixes) through a full-text index. pg_trgm would
-- allow any substring, but the embedded PostgreSQL (pgserver) does not ship it; 'simple'
-- neither stems nor drops stop words, so it suits subjects in any language.
CREATE INDEX interaction_log_entry_subject_words ON interaction_log_entry
    USING gin (to_tsvector('simple', subject));

-- Followers of new entries (`after_entry_no`) must never see a number before a smaller one
-- that a still-open transaction holds: the read model shows an entry only once every
-- transaction open at its creation has ended, which needs the row's creation time (taken
-- after its number), not its transaction's start.
ALTER TABLE interaction_log_entry ALTER COLUMN created_at SET DEFAULT clock_timestamp();
