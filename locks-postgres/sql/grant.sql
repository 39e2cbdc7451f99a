-- locks-postgres: the grants of a least-privilege application role. Run as the owner of the
-- lock tables, after install.sql:
--
--   psql "$DATABASE_URL" -v schema=public -v role=app -f grant.sql
--
-- That is all the backend needs: no CREATE, no function of its own, no superuser. Advisory
-- locks (pg_advisory_xact_lock), LISTEN and pg_notify are open to every role.
GRANT USAGE ON SCHEMA :"schema" TO :"role";
GRANT SELECT, INSERT, UPDATE, DELETE ON :"schema".locks_fences, :"schema".locks_leases TO :"role";
