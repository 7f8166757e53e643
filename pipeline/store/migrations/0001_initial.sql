-- The directory (NAV: Salesperson/Purchaser, Contact, Contact Alt. Address, Interaction Template).
CREATE TABLE salesperson (
    code  text PRIMARY KEY CHECK (code <> '' AND length(code) <= 20),
    name  text NOT NULL DEFAULT '',
    email text NOT NULL DEFAULT '' CHECK (length(email) <= 80)
);

CREATE TABLE contact (
    no         text PRIMARY KEY CHECK (no <> '' AND length(no) <= 20),
    name       text NOT NULL DEFAULT '',
    type       text NOT NULL DEFAULT 'person' CHECK (type IN ('person', 'company')),
    company_no text NOT NULL DEFAULT '',
    email      text NOT NULL DEFAULT '' CHECK (length(email) <= 80)
);

CREATE TABLE contact_alt_address (
    contact_no text NOT NULL REFERENCES contact (no) ON DELETE CASCADE,
    code       text NOT NULL CHECK (code <> '' AND length(code) <= 10),
    email      text NOT NULL DEFAULT '' CHECK (length(email) <= 80),
    PRIMARY KEY (contact_no, code)
);

CREATE TABLE interaction_template (
    code                   text PRIMARY KEY CHECK (code <> '' AND length(code) <= 10),
    description            text NOT NULL DEFAULT '',
    interaction_group_code text NOT NULL DEFAULT '',
    unit_cost              numeric(18, 2) NOT NULL DEFAULT 0,
    unit_duration_min      numeric(18, 2) NOT NULL DEFAULT 0
);

-- Lookups are on the lowercased address (NAV's "Search E-Mail").
CREATE INDEX salesperson_search_email ON salesperson (lower(email));
CREATE INDEX contact_search_email ON contact (lower(email));
CREATE INDEX contact_alt_address_search_email ON contact_alt_address (lower(email));

-- The journal. A logged message is claimed by inserting this row (state 'moving') together
-- with its entries in one transaction; after the move it records the storage item id and
-- becomes 'stored'. The unique key makes logging one message twice impossible.
CREATE TABLE stored_message (
    id                  bigserial PRIMARY KEY,
    mailbox             text NOT NULL,
    message_key         text NOT NULL,   -- Internet Message-ID, or 'sha256:<content hash>'
    internet_message_id text,
    content_hash        text NOT NULL,
    queue_item_id       text,
    storage_item_id     text,
    web_link            text,
    state               text NOT NULL DEFAULT 'moving' CHECK (state IN ('moving', 'stored')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (mailbox, message_key)
);
CREATE INDEX stored_message_moving ON stored_message (created_at) WHERE state = 'moving';

CREATE TABLE interaction_log_entry (
    entry_no                 bigserial PRIMARY KEY,
    stored_message_id        bigint NOT NULL REFERENCES stored_message (id),
    contact_no               text NOT NULL,
    contact_company_no       text NOT NULL DEFAULT '',
    contact_alt_address_code text NOT NULL DEFAULT '',
    salesperson_code         text NOT NULL,
    information_flow         text NOT NULL CHECK (information_flow IN ('outbound', 'inbound')),
    initiated_by             text NOT NULL CHECK (initiated_by IN ('us', 'them')),
    interaction_at           timestamptz,
    description              varchar(100) NOT NULL DEFAULT '',
    subject                  varchar(100) NOT NULL DEFAULT '',
    interaction_template_code text NOT NULL DEFAULT '',
    interaction_group_code   text NOT NULL DEFAULT '',
    cost_lcy                 numeric(18, 2) NOT NULL DEFAULT 0,
    duration_min             numeric(18, 2) NOT NULL DEFAULT 0,
    correspondence_type      text NOT NULL DEFAULT 'email',
    email_logged             boolean NOT NULL DEFAULT true,
    created_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stored_message_id, contact_no, salesperson_code)
);
CREATE INDEX interaction_log_entry_contact ON interaction_log_entry (contact_no, interaction_at);
CREATE INDEX interaction_log_entry_salesperson ON interaction_log_entry (salesperson_code, interaction_at);

-- One row per queue message disposed of. Privacy: no subject, no addresses, only a hash of
-- the Message-ID (so a duplicate storm can be traced without knowing what the mail was).
CREATE TABLE disposal_log (
    id                bigserial PRIMARY KEY,
    disposed_at       timestamptz NOT NULL DEFAULT now(),
    mailbox           text NOT NULL,
    queue_item_id     text,
    outcome           text NOT NULL CHECK (outcome IN (
        'logged', 'sensitive', 'excluded', 'draft', 'no_parties', 'duplicate',
        'address_too_long', 'unregistered', 'failed')),
    rule              text NOT NULL,
    message_id_hash   text NOT NULL,
    stored_message_id bigint REFERENCES stored_message (id)
);
CREATE INDEX disposal_log_time ON disposal_log (disposed_at);
-- A queue item is disposed of once: recording is idempotent across crashes and restarts
-- (ON CONFLICT DO NOTHING). 'failed' rows don't count: the item stays in the queue and may
-- succeed later.
CREATE UNIQUE INDEX disposal_log_once ON disposal_log (mailbox, queue_item_id)
    WHERE outcome <> 'failed';

-- A running service reloads its in-memory directory when these tables change.
CREATE FUNCTION emaillog_notify_directory() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('emaillog_directory', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER salesperson_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON salesperson
    FOR EACH STATEMENT EXECUTE FUNCTION emaillog_notify_directory();
CREATE TRIGGER contact_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON contact
    FOR EACH STATEMENT EXECUTE FUNCTION emaillog_notify_directory();
CREATE TRIGGER contact_alt_address_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON contact_alt_address
    FOR EACH STATEMENT EXECUTE FUNCTION emaillog_notify_directory();
CREATE TRIGGER interaction_template_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON interaction_template
    FOR EACH STATEMENT EXECUTE FUNCTION emaillog_notify_directory();
