//! The SQL of every operation, built once per backend for its schema.
//!
//! Every user value travels as a bind parameter (`$1`, `$2`, ...), never by string
//! concatenation; only the validated schema name and the advisory lock class (an integer) are
//! written into the text. Times are the server's `clock_timestamp()`, carried as whole
//! microseconds since the Unix epoch (`bigint`) between statements.
//!
//! Parameters common to all: `$1` the key prefix, `$2` the key name.

use crate::schema::Schema;

/// `x` (a `timestamptz`, or an `interval`) in whole microseconds (since the epoch).
fn us(x: &str) -> String {
    format!("(extract(epoch FROM {x}) * 1000000)::bigint")
}

/// The statements of one schema.
#[derive(Debug)]
pub(crate) struct Statements {
    /// Waits for the lock name's advisory lock (held to the end of the transaction): the
    /// operations that read, decide and write serialise on it.
    pub(crate) lock: String,
    /// Deletes the name's dead rows (every kind) and returns the server time and the live rows
    /// of the kinds `$3::text[]` (with the caller's retirement, if any), oldest fence first
    /// (at least one row: the time, with NULLs when there is no lease).
    pub(crate) state: String,
    /// Moves the expiry of `$4`'s row of kind `$3` to `$5` µs since the epoch.
    pub(crate) renew: String,
    /// Takes the next fence of the name (`max(last + 1, $4)`, `$4` = the server time in µs)
    /// and inserts a lease of kind `$3` for `$5` expiring at `$4 + $6` µs; deletes `$5`'s
    /// waiting mark (a writer that gets in). Returns the fence.
    pub(crate) grant: String,
    /// Sets (or refreshes) `$3`'s waiting mark to expire at `$4` µs.
    pub(crate) mark: String,
    /// Compare-and-extend: `$4`'s live row of kind `$3` now expires `$5` µs from now.
    pub(crate) extend: String,
    /// Compare-and-delete `$3`'s rows of the kinds `$4::text[]`; notifies `$5` with payload
    /// `$6` when a row went. Returns whether a live lease (not a mark) went; when none did,
    /// retires `$3` under the name for `$7` µs (a `retired` row: its late acquires are refused).
    /// Runs under the name's advisory lock, so it never misses an acquire committing meanwhile.
    pub(crate) release: String,
    /// Deletes every row of the kinds `$3::text[]`; notifies `$4` with payload `$5` when a row
    /// went. Returns whether a live lease (not a mark) went.
    pub(crate) force_release: String,
    /// The live rows of the kinds `$3::text[]` with their remaining µs, readers and permits
    /// oldest first, the writer last.
    pub(crate) holders: String,
}

impl Statements {
    pub(crate) fn new(schema: &Schema) -> Self {
        let (leases, fences, class) = (&schema.leases, &schema.fences, schema.lock_class);
        let key = "lock_prefix = $1 AND lock_name = $2";
        let at =
            |p: &str| format!("('epoch'::timestamptz + ({p})::bigint * interval '1 microsecond')");
        let notify = |channel: &str, payload: &str| {
            format!(
                "(SELECT count(*) FROM (SELECT pg_notify({channel}, {payload}) FROM d LIMIT 1) n)"
            )
        };
        Statements {
            lock: format!("SELECT pg_advisory_xact_lock({class}, hashtext($1 || chr(31) || $2))"),
            state: format!(
                "WITH now AS MATERIALIZED (SELECT clock_timestamp() AS t), \
                 purged AS (DELETE FROM {leases} WHERE {key} \
                     AND expires_at <= (SELECT t FROM now)) \
                 SELECT {now_us} AS now_us, l.kind, l.owner, l.fence, {exp_us} AS expires_us \
                 FROM now LEFT JOIN {leases} l ON l.lock_prefix = $1 AND l.lock_name = $2 \
                     AND l.kind = ANY($3::text[]) AND l.expires_at > now.t \
                 ORDER BY l.fence",
                now_us = us("now.t"),
                exp_us = us("l.expires_at"),
            ),
            renew: format!(
                "UPDATE {leases} SET expires_at = {} WHERE {key} AND kind = $3 AND owner = $4",
                at("$5")
            ),
            grant: format!(
                "WITH f AS (INSERT INTO {fences} AS c (lock_prefix, lock_name, last_fence) \
                     VALUES ($1, $2, greatest($4::bigint, 1)) \
                     ON CONFLICT (lock_prefix, lock_name) \
                     DO UPDATE SET last_fence = greatest(c.last_fence + 1, $4::bigint) \
                     RETURNING last_fence), \
                 m AS (DELETE FROM {leases} WHERE {key} AND kind = 'waiting' AND owner = $5) \
                 INSERT INTO {leases} (lock_prefix, lock_name, kind, owner, fence, expires_at) \
                 SELECT $1, $2, $3, $5, f.last_fence, {} FROM f \
                 RETURNING fence",
                at("$4::bigint + $6::bigint")
            ),
            mark: format!(
                "INSERT INTO {leases} (lock_prefix, lock_name, kind, owner, fence, expires_at) \
                 VALUES ($1, $2, 'waiting', $3, 0, {}) \
                 ON CONFLICT (lock_prefix, lock_name, kind, owner) \
                 DO UPDATE SET expires_at = excluded.expires_at",
                at("$4")
            ),
            extend: format!(
                "UPDATE {leases} \
                 SET expires_at = clock_timestamp() + $5::bigint * interval '1 microsecond' \
                 WHERE {key} AND kind = $3 AND owner = $4 AND expires_at > clock_timestamp()"
            ),
            release: format!(
                "WITH d AS (DELETE FROM {leases} WHERE {key} AND owner = $3 \
                     AND kind = ANY($4::text[]) \
                     RETURNING kind, expires_at > clock_timestamp() AS live), \
                 r AS (INSERT INTO {leases} \
                         (lock_prefix, lock_name, kind, owner, fence, expires_at) \
                     SELECT $1, $2, 'retired', $3, 0, \
                         clock_timestamp() + $7::bigint * interval '1 microsecond' \
                     WHERE NOT EXISTS (SELECT 1 FROM d WHERE live AND kind <> 'waiting') \
                     ON CONFLICT (lock_prefix, lock_name, kind, owner) \
                     DO UPDATE SET expires_at = excluded.expires_at) \
                 SELECT coalesce((SELECT bool_or(live AND kind <> 'waiting') FROM d), false) \
                         AS released, \
                     {} AS notified",
                notify("$5", "$6")
            ),
            force_release: format!(
                "WITH d AS (DELETE FROM {leases} WHERE {key} AND kind = ANY($3::text[]) \
                     RETURNING kind, expires_at > clock_timestamp() AS live) \
                 SELECT coalesce(bool_or(live AND kind <> 'waiting'), false) AS released, \
                     {} AS notified \
                 FROM d",
                notify("$4", "$5")
            ),
            holders: format!(
                "WITH now AS MATERIALIZED (SELECT clock_timestamp() AS t) \
                 SELECT l.kind, l.owner, l.fence, {rem} AS remaining_us \
                 FROM {leases} l, now WHERE l.lock_prefix = $1 AND l.lock_name = $2 \
                     AND l.kind = ANY($3::text[]) AND l.expires_at > now.t \
                 ORDER BY l.kind = 'write', l.fence",
                rem = us("(l.expires_at - now.t)")
            ),
        }
    }
}
