-- Every path a call names, canonicalised, as a JSON array of strings (`resource_path` keeps only
-- the first). NULL for rows recorded before this column existed; `behavry log` then shows
-- `resource_path` alone. Decision records written since carry the same text in their journal
-- body (`paths`), so `log --verify` covers it.
ALTER TABLE decisions ADD COLUMN paths TEXT;
