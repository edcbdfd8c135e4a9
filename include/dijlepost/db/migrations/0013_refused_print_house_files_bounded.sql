-- A print-house file that is refused is kept as its SHA-256, its size and its first bytes (at most
-- 4096, `printhouse/acks.py` REFUSED_KEPT_BYTES), enough to show the print house what was refused,
-- never whole: a print house that sends a large or ever different bad file cannot fill the database.
-- Applied files are still kept whole (they are bounded by what they must hold to apply).
ALTER TABLE print_house_files
    ADD COLUMN size_bytes bigint CHECK (size_bytes >= 0),
    ADD CONSTRAINT print_house_files_refused_bounded
        CHECK (outcome <> 'refused' OR octet_length(content) <= 4096) NOT VALID;
UPDATE print_house_files SET size_bytes = octet_length(content);
UPDATE print_house_files SET content = substring(content FROM 1 FOR 4096)
 WHERE outcome = 'refused' AND octet_length(content) > 4096;
ALTER TABLE print_house_files VALIDATE CONSTRAINT print_house_files_refused_bounded;
