-- The eBox subject and file name (in the letter's one language) are made by the renderer; keeping them
-- with the PDF lets the delivery task publish without loading templates and fonts again.
ALTER TABLE letters ADD COLUMN pdf_subject text, ADD COLUMN pdf_filename text;
