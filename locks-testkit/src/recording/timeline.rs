//! The recording as text: events and probe hits interleaved in recording order, for
//! assertion messages and debugging.

use std::fmt::Write as _;

use super::log::Log;
use super::{rel, short};

impl Log {
    /// The recording as text, the last `max` lines.
    pub(super) fn timeline(&self, max: usize) -> String {
        let mut lines: Vec<(u64, String)> = Vec::with_capacity(self.events.len() + self.hits.len());
        for e in &self.events {
            let mut line = format!(
                "#{} {} {} `{}` {}",
                e.seq,
                rel(self.origin, e.at),
                e.kind.label(),
                e.key,
                e.lease_kind
            );
            if let Some(owner) = e.owner {
                let _ = write!(line, " owner {}", short(owner));
            }
            if let Some(fence) = e.fence {
                let _ = write!(line, " fence {fence}");
            }
            if e.elsewhere {
                line.push_str(" [elsewhere]");
            }
            lines.push((e.seq, line));
        }
        for h in &self.hits {
            let mut line = format!(
                "#{} {} probe hit `{}`",
                h.seq,
                rel(self.origin, h.at),
                h.key
            );
            if let Some(f) = h.fence {
                let _ = write!(line, " with fence {f}");
            }
            match h.holder {
                Some(holder) => {
                    let _ = write!(
                        line,
                        ": held by {} fence {}{}",
                        short(holder.owner),
                        holder.fence,
                        if holder.elsewhere { " [elsewhere]" } else { "" }
                    );
                }
                None => line.push_str(": NOT HELD"),
            }
            lines.push((h.seq, line));
        }
        lines.sort_by_key(|(seq, _)| *seq);
        let mut out = String::from("recorded timeline:\n");
        if lines.is_empty() {
            out.push_str("  (nothing was recorded)\n");
        }
        let skip = lines.len().saturating_sub(max);
        if skip > 0 {
            let _ = writeln!(out, "  ... {skip} earlier line(s)");
        }
        for (_, line) in lines.into_iter().skip(skip) {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}
