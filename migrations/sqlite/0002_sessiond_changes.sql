-- A count of the rows changed in django_session, kept by SQLite itself
-- whichever process writes (sessiond, or a Django app on the same file).
-- A read that sees the count unchanged since sessiond last wrote knows that
-- no other process has written since, so sessiond's in-memory copies of the
-- rows it wrote and read are still exact (see the engine's `row_cache`).
-- sessiond's own purges are not counted: they delete only sessions already
-- expired, which no copy answers. Django's table keeps its columns and
-- indexes. The count only goes up:
-- its row can be neither deleted nor lowered. Every statement may run
-- again: sessiond does so at each migrate, to put back triggers that a
-- rebuild of django_session dropped.
-- backward-compatible: yes
CREATE TABLE IF NOT EXISTS "sessiond_changes" ("id" integer NOT NULL PRIMARY KEY CHECK ("id" = 1), "changes" integer NOT NULL);
INSERT OR IGNORE INTO "sessiond_changes" ("id", "changes") VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS "sessiond_changes_insert" AFTER INSERT ON "django_session" BEGIN UPDATE "sessiond_changes" SET "changes" = "changes" + 1; END;
CREATE TRIGGER IF NOT EXISTS "sessiond_changes_update" AFTER UPDATE ON "django_session" BEGIN UPDATE "sessiond_changes" SET "changes" = "changes" + 1; END;
CREATE TRIGGER IF NOT EXISTS "sessiond_changes_delete" AFTER DELETE ON "django_session" BEGIN UPDATE "sessiond_changes" SET "changes" = "changes" + 1; END;
CREATE TRIGGER IF NOT EXISTS "sessiond_changes_only_up" BEFORE UPDATE ON "sessiond_changes" WHEN NEW."changes" < OLD."changes" OR NEW."id" <> OLD."id" BEGIN SELECT RAISE(ABORT, 'sessiond_changes only counts up'); END;
CREATE TRIGGER IF NOT EXISTS "sessiond_changes_kept" BEFORE DELETE ON "sessiond_changes" BEGIN SELECT RAISE(ABORT, 'sessiond_changes keeps its row'); END;
