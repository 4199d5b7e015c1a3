-- Adds the `backward_compatible` column to a sessiond_migrations table
-- created before it existed. The default keeps the binaries from before
-- able to record migrations, and marks what they recorded as not
-- compatible, which is what they promised.
ALTER TABLE sessiond_migrations ADD COLUMN backward_compatible boolean NOT NULL DEFAULT false;
