-- Issue 16: the directory's life. People are retired, never deleted: a salesperson who left
-- or a contact deleted in the ERP keeps the name on their past entries but never matches
-- again. NULL = active. `directory import --replace` retires whoever its files leave out;
-- `directory retire` retires one; importing a retired person again makes them active.
ALTER TABLE salesperson ADD COLUMN retired_at timestamptz;
ALTER TABLE contact ADD COLUMN retired_at timestamptz;
