//! The least-privilege mode (Redis >= 7.0): the scripts as a `FUNCTION` library.
//!
//! With `EVALSHA`, the application's Redis user must be allowed `SCRIPT LOAD` and `EVALSHA`,
//! and can then run *any* Lua on the lock keys: an ACL cannot confine it to the library's
//! operations. In this mode an operator installs the scripts once as the function library
//! [`LIBRARY`] ([`install_functions`]; `FUNCTION LOAD REPLACE`, so installing again upgrades
//! it in place), and the backend built with
//! [`function_library(true)`](crate::RedisBackendBuilder::function_library) calls them with
//! `FCALL` / `FCALL_RO`. The application user then needs no script loading: it cannot run Lua
//! of its own (no `SCRIPT`, `EVAL*`, `FUNCTION`), so no code but the library's runs on the
//! lock keys and no busy script can stall the server. See [`APP_USER_ACL`].
//!
//! **What it cannot do:** Redis checks every command a function runs against the *calling*
//! user's ACL (there is no "only inside this function" permission), so the user still needs
//! the data commands the library runs (`HSET`, `ZADD`, `SET`, `DEL`, `PEXPIRE`, ...) on the
//! lock keys, and can run them directly. The mode removes code loading, not raw writes; the
//! trust model (README) says so.
//!
//! The library is generated from the very same [`Lua`] bodies as the `EVALSHA` scripts (one
//! source of the logic): `#!lua name=locks_v2`, `MAX_MS`, `local KEYS, ARGV` (set by each
//! function from its arguments before its body runs, so the helpers and bodies read them as
//! they do in a script), the helpers, then one `local function` per script, registered as
//! `locks_v2_<name>` with flags from its [`Oom`] (`allow-oom` for renewals, releases and
//! clean-ups, `no-writes` for reads, none for acquires), and `locks_v2_version`, which answers
//! [`library_version`]: a digest of the whole text. At connect, the backend calls it and
//! refuses a missing or different library with
//! [`RedisBackendError::FunctionLibrary`].

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use redis::{Client, Value};

use crate::connection::Connection;
use crate::counter::MAX_PX_MS;
use crate::error::{RedisBackendError, connect_error};
use crate::scripts::{self, HELPERS, Lua, Oom};

/// The name of the function library. Its version (`v1`) is part of every function's name; a
/// library whose scripts change incompatibly gets the next name, so old and new applications
/// can run side by side during a rolling upgrade.
pub const LIBRARY: &str = "locks_v2";

/// The ACL of an application user in the least-privilege mode, for the default key prefix
/// `_lock:` (replace `PASSWORD`): every operation of the library, notifications included, and
/// no code loading (`SCRIPT`, `EVAL*`, `FUNCTION`).
///
/// The data commands are there because Redis checks every command a function runs against the
/// *calling* user's ACL (there is no "only inside this function" permission): the user can
/// also run them directly on the lock keys. The mode removes code loading, not raw writes.
/// `+info|memory` lets `connect` read the eviction policy (drop it with
/// [`allow_eviction_policy(true)`](crate::RedisBackendBuilder::allow_eviction_policy)).
/// `+scan` lets [`LockBackend::list`](locks_core::LockBackend::list) (`LockService::holders`,
/// `locks ls`) find the locks; Redis does not filter `SCAN` by key pattern, so it shows the
/// user the *names* of other keys too (never their values): drop it if that matters and list
/// as an operator user.
pub const APP_USER_ACL: &str = "on >PASSWORD resetchannels ~_lock:* &_lock:* -@all +fcall \
     +fcall_ro +ping +info|memory +subscribe +unsubscribe +publish +time +get +set +del +exists \
     +pexpire +pttl +hget +hmget +hset +hdel +zadd +zrem +zscore +zcard +zrange +zrangebyscore \
     +zremrangebyscore +scan";

/// How the backend runs its scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Calls {
    /// `EVALSHA` (`SCRIPT LOAD` after `NOSCRIPT`): any Redis, the default.
    #[default]
    Eval,
    /// `FCALL` / `FCALL_RO` of the installed [`LIBRARY`] (Redis >= 7.0).
    Functions,
    /// Hook for Redis Cluster (issue 12, helper D): `EVALSHA` of the scripts' sharded form,
    /// which announce releases with `SPUBLISH` (Redis >= 7).
    EvalSharded,
}

/// The function flags of a script.
fn flags(oom: Oom) -> &'static str {
    match oom {
        Oom::Refused => "",
        Oom::Keeps | Oom::Allowed => "'allow-oom'",
        Oom::ReadOnly => "'no-writes'",
    }
}

/// Whether a script is called with `FCALL_RO`.
pub(crate) fn read_only(lua: &Lua) -> bool {
    lua.oom == Oom::ReadOnly
}

/// The library text without its version function, and the version (digest of that text).
static LIBRARY_TEXT: LazyLock<(String, String)> = LazyLock::new(|| {
    let mut text = format!(
        "#!lua name={LIBRARY}\nlocal MAX_MS, MAX_MS_TEXT = {MAX_PX_MS}, '{MAX_PX_MS}'\nlocal KEYS, ARGV\n{HELPERS}\
         local function entry(body)\n  return function(keys, args)\n    KEYS, ARGV = keys, \
         args\n    return body()\n  end\nend\n"
    );
    for lua in scripts::ALL {
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "local function {name}()\n{body}\nend\nredis.register_function{{function_name = \
             '{function}', callback = entry({name}), flags = {{{flags}}}}}\n",
            name = lua.name,
            body = lua.body.trim_matches('\n'),
            function = lua.function,
            flags = flags(lua.oom),
        );
    }
    let version = format!("{LIBRARY}:{:016x}", fnv1a(text.as_bytes()));
    (text, version)
});

/// The library's version: its name and a digest of its text (every script body, the helpers,
/// the flags). `locks_v2_version` answers it; a backend refuses a library that answers
/// anything else.
pub fn library_version() -> &'static str {
    &LIBRARY_TEXT.1
}

/// The whole library text, as [`install_functions`] loads it (for an operator who loads it by
/// other means: `redis-cli -x FUNCTION LOAD REPLACE < locks_v2.lua`).
pub fn library_source() -> String {
    let (text, version) = &*LIBRARY_TEXT;
    format!(
        "{text}redis.register_function{{function_name = '{LIBRARY}_version', callback = \
         function() return '{version}' end, flags = {{'no-writes'}}}}\n"
    )
}

/// 64-bit FNV-1a: a stable digest (not a security measure: it only tells versions apart).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Install (or upgrade) the function library on the server at `url` with
/// `FUNCTION LOAD REPLACE`: the operator's step of the least-privilege mode, run once per
/// server (and after each upgrade of this crate that changes [`library_version`]) with a user
/// allowed `FUNCTION LOAD` (e.g. `+function|load`). Needs Redis >= 7.0. Returns the installed
/// [`library_version`].
///
/// On Redis Cluster, run it against every primary (functions are not propagated between
/// shards); replicas get it from their primary.
///
/// Errors: [`RedisBackendError::InvalidUrl`], `Connect`, `Authentication` (also a user not
/// allowed `FUNCTION LOAD`), and [`RedisBackendError::FunctionLibrary`] when the server refuses
/// the library (e.g. older than 7.0).
///
/// ```no_run
/// # async fn demo() -> Result<(), locks_redis::RedisBackendError> {
/// let version = locks_redis::install_functions("redis://admin:secret@127.0.0.1:6379").await?;
/// println!("installed {version}");
/// # Ok(()) }
/// ```
///
/// # Cancel safety
///
/// `FUNCTION LOAD` is atomic: dropping the future leaves the old library or the new one.
pub async fn install_functions(url: &str) -> Result<&'static str, RedisBackendError> {
    let client = Client::open(url).map_err(|e| RedisBackendError::InvalidUrl {
        reason: e.to_string(),
        source: Some(e),
    })?;
    install_functions_with(&client).await
}

/// [`install_functions`] through an existing [`redis::Client`] (e.g. one with custom TLS
/// certificates).
///
/// # Cancel safety
///
/// As [`install_functions`].
pub async fn install_functions_with(client: &Client) -> Result<&'static str, RedisBackendError> {
    let addr = client.get_connection_info().addr().to_string();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| connect_error(&addr, e))?;
    let loaded: Result<Value, _> = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(library_source())
        .query_async(&mut conn)
        .await;
    match loaded {
        Ok(_) => Ok(library_version()),
        Err(e) if e.code() == Some("NOPERM") || e.is_connection_dropped() || e.is_io_error() => {
            Err(connect_error(&addr, e))
        }
        Err(e) => Err(RedisBackendError::FunctionLibrary {
            addr,
            reason: "the server refused to load it (it needs Redis >= 7.0)".into(),
            source: Some(e),
        }),
    }
}

/// At connect, in the least-privilege mode: the server has this crate's library (within the
/// connect timeout `ct`).
pub(crate) async fn require_library(
    conn: &Arc<Connection>,
    addr: &str,
    ct: std::time::Duration,
) -> Result<(), RedisBackendError> {
    match tokio::time::timeout(ct, check_library(conn, addr)).await {
        Ok(checked) => checked,
        Err(_) => Err(RedisBackendError::ConnectTimeout {
            addr: addr.to_owned(),
            timeout: ct,
        }),
    }
}

/// The library's version function answers [`library_version`].
async fn check_library(conn: &Arc<Connection>, addr: &str) -> Result<(), RedisBackendError> {
    let answer = conn
        .run(|mut c| async move {
            redis::cmd("FCALL_RO")
                .arg(format!("{LIBRARY}_version"))
                .arg(0)
                .query_async::<String>(&mut c)
                .await
        })
        .await;
    let wrong = |reason: String, source| RedisBackendError::FunctionLibrary {
        addr: addr.to_owned(),
        reason,
        source,
    };
    match answer {
        Ok(v) if v == library_version() => Ok(()),
        Ok(v) => Err(wrong(
            format!(
                "the server has version `{v}`, this build needs `{}`: install it with \
                 `locks_redis::install_functions` (FUNCTION LOAD REPLACE)",
                library_version()
            ),
            None,
        )),
        Err(e) if e.code() == Some("NOPERM") || e.is_io_error() || e.is_timeout() => {
            Err(connect_error(addr, e))
        }
        Err(e) => Err(wrong(
            format!(
                "the library `{LIBRARY}` is not installed (or the server is older than 7.0): an \
                 operator installs it once with `locks_redis::install_functions`"
            ),
            Some(e),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_is_named_after_the_library_and_registered_once() {
        let source = library_source();
        assert!(source.starts_with(&format!("#!lua name={LIBRARY}\n")));
        for lua in scripts::ALL {
            assert_eq!(lua.function, format!("{LIBRARY}_{}", lua.name));
            let registered = format!("function_name = '{}',", lua.function);
            assert_eq!(source.matches(&registered).count(), 1, "{}", lua.name);
            // The body is the script's, not a copy.
            assert!(source.contains(lua.body.trim_matches('\n')), "{}", lua.name);
        }
        assert!(source.contains(library_version()));
    }

    #[test]
    fn the_version_follows_the_text() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert!(library_version().starts_with("locks_v2:"));
    }
}
