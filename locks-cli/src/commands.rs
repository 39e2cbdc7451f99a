//! The commands, each over a connected [`Store`].

use std::io::Write;
use std::time::Duration;

use futures::TryStreamExt;
use locks_core::LockKey;
use locks_core::backend::{ListQuery, ListedLock, LockKind, list_stream};
use locks_core::health::BackendHealth;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::connect::Store;
use crate::error::CliError;
use crate::view::{LockView, seconds, short, table};

/// Every lock under `prefix` whose name starts with `pattern` (a trailing `*` ignored).
pub async fn list(
    store: &Store,
    prefix: &str,
    pattern: Option<&str>,
) -> Result<Vec<LockView>, CliError> {
    let start = pattern.unwrap_or("").trim_end_matches('*');
    let query = ListQuery::new(prefix)
        .map_err(|e| CliError::Usage(format!("--prefix: {e}")))?
        .names_starting_with(start);
    let locks: Vec<ListedLock> = list_stream(&*store.backend, query)
        .try_collect()
        .await
        .map_err(|e| CliError::store("listing the locks", e))?;
    Ok(locks.iter().map(LockView::from).collect())
}

/// `ls`: print the table or the JSON document.
pub fn print_list(prefix: &str, locks: &[LockView], json: bool) -> String {
    if json {
        return json!({ "prefix": prefix, "locks": locks }).to_string() + "\n";
    }
    let mut out = table(locks);
    if locks.is_empty() {
        out.push_str(&format!("no lock held under the prefix {prefix:?}\n"));
    }
    out
}

fn key(prefix: &str, name: &str) -> Result<LockKey, CliError> {
    LockKey::new(prefix, name).map_err(|e| CliError::Usage(e.to_string()))
}

/// Every primitive held under `name`.
pub async fn show(store: &Store, prefix: &str, name: &str) -> Result<Vec<LockView>, CliError> {
    let key = key(prefix, name)?;
    let mut views = Vec::new();
    for kind in LockKind::ALL {
        // A store that cannot keep this primitive (a fair mutex on PostgreSQL) holds none.
        if !store.backend.supports(kind.lease_kind()) {
            continue;
        }
        let holders = store
            .backend
            .holders(&key, kind.lease_kind())
            .await
            .map_err(|e| CliError::store("reading the holders", e))?;
        if !holders.leases.is_empty() {
            views.push(LockView::from(&ListedLock::new(key.clone(), kind, holders)));
        }
    }
    Ok(views)
}

/// `show`: one block per primitive, one line per holder.
pub fn print_show(name: &str, views: &[LockView], json: bool) -> String {
    if json {
        return json!({ "name": name, "held": !views.is_empty(), "locks": views }).to_string()
            + "\n";
    }
    if views.is_empty() {
        return format!("{name}: not held\n");
    }
    let mut out = String::new();
    for v in views {
        out.push_str(&format!(
            "{} ({}, key prefix {:?}):\n",
            v.name, v.kind, v.prefix
        ));
        for h in &v.holders {
            out.push_str(&format!(
                "  {:<6} owner {}  fence {}  ttl {}\n",
                h.lease,
                h.owner,
                h.fence,
                seconds(Duration::from_millis(h.ttl_ms))
            ));
        }
        if v.writer_waiting {
            out.push_str("  a writer waits for the readers to leave\n");
        }
    }
    out
}

/// `release`: refuse without `force`, ask unless `yes` (reading the answer from stdin), then
/// delete the held primitives (or `only`). Returns the kinds released.
pub async fn release(
    store: &Store,
    prefix: &str,
    name: &str,
    (force, yes, only): (bool, bool, Option<LockKind>),
) -> Result<Vec<&'static str>, CliError> {
    if !force {
        return Err(CliError::Refused(format!(
            "refusing to release {name:?} without --force: its holder still believes it holds \
             the lock until its next renewal"
        )));
    }
    let key = key(prefix, name)?;
    let held: Vec<LockView> = show(store, prefix, name)
        .await?
        .into_iter()
        .filter(|v| only.is_none_or(|k| k.label() == v.kind))
        .collect();
    if held.is_empty() {
        return Ok(Vec::new());
    }
    if !yes {
        let what: Vec<String> = held
            .iter()
            .map(|v| {
                let owners: Vec<String> = v.holders.iter().map(|h| short(&h.owner)).collect();
                format!("{} held by {}", v.kind, owners.join(", "))
            })
            .collect();
        eprint!(
            "Force-release {name:?} ({})? The holder is not told until its next renewal. [y/N] ",
            what.join("; ")
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        BufReader::new(tokio::io::stdin())
            .read_line(&mut answer)
            .await
            .map_err(|e| CliError::Refused(format!("no confirmation read: {e}")))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err(CliError::Refused(format!(
                "not released: {name:?} (not confirmed)"
            )));
        }
    }
    let mut released = Vec::new();
    for v in held {
        let Some(kind) = LockKind::from_label(v.kind) else {
            continue;
        };
        if store
            .backend
            .force_release(&key, kind.lease_kind())
            .await
            .map_err(|e| CliError::store("releasing", e))?
        {
            released.push(v.kind);
        }
    }
    Ok(released)
}

/// `release`'s report.
pub fn print_release(name: &str, released: &[&str], json: bool) -> String {
    if json {
        return json!({ "name": name, "released": released }).to_string() + "\n";
    }
    if released.is_empty() {
        format!("{name}: not held, nothing released\n")
    } else {
        format!("released {name} ({})\n", released.join(", "))
    }
}

/// `health`: the store's facts, and the problems found.
pub async fn health(store: &Store) -> Result<BackendHealth, CliError> {
    store
        .health
        .health()
        .await
        .map_err(|e| CliError::store("reading the health facts", e))
}

/// `health`'s report.
pub fn print_health(h: &BackendHealth, json: bool) -> String {
    let problems: Vec<String> = h
        .problems(&Default::default())
        .iter()
        .map(ToString::to_string)
        .collect();
    if json {
        let replication = h.replication.as_ref().map(|r| {
            json!({
                "role": r.role,
                "connected_replicas": r.connected_replicas,
                "link_up": r.link_up,
            })
        });
        return json!({
            "backend": h.backend,
            "address": h.address,
            "ping_us": u64::try_from(h.ping.as_micros()).unwrap_or(u64::MAX),
            "server_version": h.server_version,
            "eviction_policy": h.eviction_policy,
            "may_evict": h.may_evict,
            "used_memory": h.used_memory,
            "max_memory": h.max_memory,
            "clock_offset_us": h.clock_offset.map(|o| o.as_micros()),
            "replication": replication,
            "healthy": problems.is_empty(),
            "problems": problems,
        })
        .to_string()
            + "\n";
    }
    let unknown = || "unknown".to_owned();
    let mut rows: Vec<(&str, String)> = vec![
        ("backend", h.backend.to_owned()),
        ("address", h.address.clone().unwrap_or_else(unknown)),
        ("ping", format!("{:.3}ms", h.ping.as_secs_f64() * 1000.0)),
        ("version", h.server_version.clone().unwrap_or_else(unknown)),
        (
            "eviction policy",
            match (&h.eviction_policy, h.may_evict) {
                (Some(p), Some(true)) => format!("{p} (UNSAFE: may evict live leases)"),
                (Some(p), _) => p.clone(),
                (None, _) => unknown(),
            },
        ),
        (
            "memory",
            match (h.used_memory, h.max_memory) {
                (Some(used), Some(0)) => format!("{used} B used, no limit"),
                (Some(used), Some(max)) => format!("{used} B used of {max} B"),
                (Some(used), None) => format!("{used} B used"),
                _ => unknown(),
            },
        ),
        (
            "clock offset",
            h.clock_offset
                .map_or_else(unknown, |o| format!("{o} (store minus this host)")),
        ),
        (
            "replication",
            h.replication.as_ref().map_or_else(unknown, |r| {
                let mut s = r.role.clone();
                if let Some(n) = r.connected_replicas {
                    s.push_str(&format!(", {n} connected replicas"));
                }
                if let Some(up) = r.link_up {
                    s.push_str(if up { ", link up" } else { ", link DOWN" });
                }
                s
            }),
        ),
    ];
    rows.push((
        "status",
        if problems.is_empty() {
            "healthy".to_owned()
        } else {
            format!("PROBLEMS: {}", problems.join("; "))
        },
    ));
    rows.iter().map(|(k, v)| format!("{k:<16}{v}\n")).collect()
}
