ALTER TABLE endpoints DROP COLUMN filter;
