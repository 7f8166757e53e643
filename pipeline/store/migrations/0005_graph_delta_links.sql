-- The Graph source's delta link per mailbox and folder: where the last completed delta
-- round ended, so that a restart resumes instead of listing the whole folder again.
CREATE TABLE IF NOT EXISTS graph_delta_link (
    mailbox    text        NOT NULL,
    folder_id  text        NOT NULL,
    delta_link text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox, folder_id)
);
