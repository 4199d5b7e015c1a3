-- A count of the rows changed in django_session, kept by SQLite itself
-- whichever process writes (sessiond, or a Django app on the same file).
-- A read that sees the count unchanged since sessiond last wrote knows that
-- no other process has written since, so sessiond's in-memory copy of the
-- rows it wrote and read is still exact (see the engine's `row_cache`).
-- Django's table itself is not changed.
-- backward-compatible: yes
CREATE TABLE "sessiond_changes" ("id" integer NOT NULL PRIMARY KEY CHECK ("id" = 1), "changes" integer NOT NULL);
INSERT INTO "sessiond_changes" ("id", "changes") VALUES (1, 0);
CREATE TRIGGER "sessiond_changes_insert" AFTER INSERT ON "django_session" BEGIN UPDATE "sessiond_changes" SET "changes" = "changes" + 1; END;
CREATE TRIGGER "sessiond_changes_update" AFTER UPDATE ON "django_session" BEGIN UPDATE "sessiond_changes" SET "changes" = "changes" + 1; END;
CREATE TRIGGER "sessiond_changes_delete" AFTER DELETE ON "django_session" BEGIN UPDATE "sessiond_changes" SET "changes" = "changes" + 1; END;
