-- A failed record is stored cut to 4 KiB (one enormous record must not fill the database); this says which were
-- cut, so the page can say so and "Retry failed" does not send a cut record as if it were whole.
ALTER TABLE sync_failures ADD COLUMN truncated BIGINT NOT NULL DEFAULT 0;
