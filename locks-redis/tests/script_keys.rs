//! Every key a script touches is one of the `KEYS` it was given: what keeps each script on one
//! Redis Cluster slot (the `{name}` hash tag is shared by the names in `KEYS`; a key built
//! inside a script would escape both the slot check and the ACL key patterns).
//!
//! The server says which arguments are keys: `MONITOR` shows every command a script runs
//! (`[0 lua] ...`) after the `EVALSHA`/`EVAL` that started it, and `COMMAND GETKEYS` names
//! the key arguments of each. The test drives every operation of every lease kind through the
//! backend, one at a time, and checks each script command's keys against its `KEYS`.

mod common;

use std::time::Duration;

use common::{backend, key, private_server, unique, within};
use futures::StreamExt;
use locks_core::{LeaseKind, LockBackend, OwnerToken};
use locks_redis::redis::{self, Value};

/// One `MONITOR` line's arguments (the quoted strings after the address).
fn monitor_args(line: &str) -> Option<(bool, Vec<String>)> {
    let close = line.find(']')?;
    let from_lua = line[..close].contains(" lua");
    let mut args = Vec::new();
    let mut rest = &line[close + 1..];
    while let Some(start) = rest.find('"') {
        let mut out = String::new();
        let mut chars = rest[start + 1..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        out.push(escaped);
                    }
                }
                '"' => {
                    end = Some(start + 1 + i);
                    break;
                }
                c => out.push(c),
            }
        }
        args.push(out);
        rest = &rest[end? + 1..];
    }
    Some((from_lua, args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_touch_only_the_keys_they_are_given() {
    let server = private_server().await;
    let client = redis::Client::open(server.url()).unwrap_or_else(|e| panic!("{e}"));
    let monitor = client
        .get_async_monitor()
        .await
        .unwrap_or_else(|e| panic!("MONITOR: {e}"));
    let mut lines = monitor.into_on_message::<String>();
    let b = backend(&server).await;
    let name = unique("script-keys");
    let k = key(&name);
    let ttl = Duration::from_secs(10);
    for kind in [
        LeaseKind::Mutex,
        LeaseKind::Permit { limit: 1 },
        LeaseKind::Read,
        LeaseKind::Write,
    ] {
        let (a, other) = (OwnerToken::new(), OwnerToken::new());
        let ops = async {
            b.try_acquire(&k, kind, a, ttl).await?;
            b.try_acquire(&k, kind, a, ttl).await?;
            b.try_acquire(&k, kind, other, ttl).await?;
            b.extend(&k, kind, a, ttl).await?;
            b.holders(&k, kind).await?;
            b.release(&k, kind, a).await?;
            b.release(&k, kind, a).await?;
            b.extend(&k, kind, a, ttl).await?;
            b.try_acquire(&k, kind, other, ttl).await?;
            b.force_release(&k, kind).await?;
            Ok::<_, locks_core::BackendError>(())
        };
        ops.await.unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    // A marker after the last script: everything before it has been monitored.
    let mut raw = server.connection().await.unwrap_or_else(|e| panic!("{e}"));
    let marker = format!("{name}:end");
    let _: Value = redis::cmd("EXISTS")
        .arg(&marker)
        .query_async(&mut raw)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut scripts = 0;
    let mut checked = 0;
    let mut current_keys: Option<Vec<String>> = None;
    let mut violations = Vec::new();
    loop {
        let line = within("the monitor's next line", lines.next())
            .await
            .unwrap_or_else(|| panic!("MONITOR stream ended"));
        let Some((from_lua, args)) = monitor_args(&line) else {
            continue;
        };
        let Some(command) = args.first().map(|c| c.to_ascii_uppercase()) else {
            continue;
        };
        if !from_lua {
            if command == "EXISTS" && args.get(1) == Some(&marker) {
                break;
            }
            current_keys = match command.as_str() {
                "EVALSHA" | "EVAL" | "FCALL" => {
                    scripts += 1;
                    let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
                    Some(args.iter().skip(3).take(n).cloned().collect())
                }
                _ => None,
            };
            continue;
        }
        let Some(declared) = &current_keys else {
            violations.push(format!("a script command outside a script call: {line}"));
            continue;
        };
        // Which of the arguments are keys: the server's own answer.
        if args.len() == 1 {
            // TIME: no argument, no key.
            checked += 1;
            continue;
        }
        let mut getkeys = redis::cmd("COMMAND");
        getkeys.arg("GETKEYS").arg(&args);
        let keys: Vec<String> = match getkeys.query_async(&mut raw).await {
            Ok(keys) => keys,
            // "The command has no key arguments" (TIME, PUBLISH, ...).
            Err(e) if e.to_string().to_ascii_lowercase().contains("no key") => Vec::new(),
            Err(e) => panic!("COMMAND GETKEYS {args:?}: {e}"),
        };
        checked += 1;
        for used in keys {
            if !declared.contains(&used) {
                violations.push(format!(
                    "{command} touched {used:?}, not among KEYS {declared:?}"
                ));
            }
        }
    }
    assert!(
        scripts >= 40 && checked >= scripts,
        "only {scripts} scripts and {checked} script commands were monitored"
    );
    assert!(
        violations.is_empty(),
        "scripts touched keys outside KEYS:\n{}",
        violations.join("\n")
    );
}
