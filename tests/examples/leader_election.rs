//! Leader election — three schedulers campaign for one role; each leader is deployed away in
//! turn and the next takes over with a higher term; two leaders never act at once.
//!
//! `cargo run -p locks-tests --example leader_election` (memory) or with `REDIS_URL=...`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locks_core::{AcquireOptions, LockBackend, LockService};
use tokio::sync::{mpsc, oneshot};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the leaders did, shared by every node.
#[derive(Default)]
struct Observed {
    leading_now: AtomicUsize,
    overlaps: AtomicU64,
    terms: Mutex<Vec<u64>>,
}

/// What the example saw.
#[derive(Debug)]
pub struct Report {
    /// The leaders' terms (fences), in the order they started leading: increasing.
    pub terms: Vec<u64>,
    /// Times two leaders ran at once (none).
    pub overlaps: u64,
}

/// `nodes` schedulers campaign with `Election::run_until`; whenever one becomes leader it is
/// told to stop (a deploy), resigns, and another takes over, until every node has led once.
pub async fn run(backend: Arc<dyn LockBackend>, nodes: usize) -> Result<Report, Error> {
    let observed = Arc::new(Observed::default());
    let (elected_tx, mut elected_rx) = mpsc::unbounded_channel::<usize>();
    let (mut stops, mut running) = (Vec::new(), Vec::new());
    for node in 0..nodes {
        let election = LockService::builder_arc(backend.clone())
            .build()?
            .election("scheduler")?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        stops.push(Some(stop_tx));
        let (observed, elected_tx) = (observed.clone(), elected_tx.clone());
        running.push(tokio::spawn(async move {
            let opts = AcquireOptions::new().ttl(Duration::from_secs(2));
            // Campaign; while leading, run the scheduler loop; on stop, resign.
            let lead = move |lease: locks_core::LeaseHandle| {
                let (observed, elected_tx) = (observed.clone(), elected_tx.clone());
                async move {
                    if observed.leading_now.fetch_add(1, Ordering::SeqCst) != 0 {
                        observed.overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    let _stepped_down = StepDown(observed.clone());
                    let term = lease.fence(); // pass it to whatever the leader writes to
                    observed
                        .terms
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(term);
                    let _ = elected_tx.send(node);
                    std::future::pending::<()>().await // the scheduler loop
                }
            };
            let stop = async move {
                let _ = stop_rx.await;
            };
            election.run_until(opts, lead, stop).await
        }));
    }
    // Deploy whichever node leads, one after the other.
    for _ in 0..nodes {
        let Some(leader) = elected_rx.recv().await else {
            break;
        };
        if let Some(stop) = stops[leader].take() {
            let _ = stop.send(());
        }
    }
    for node in running {
        node.await??;
    }
    let terms = observed
        .terms
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(Report {
        terms,
        overlaps: observed.overlaps.load(Ordering::SeqCst),
    })
}

/// Counts a leader out when its task ends (cancelled on stop).
struct StepDown(Arc<Observed>);

impl Drop for StepDown {
    fn drop(&mut self) {
        self.0.leading_now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let backend = locks_tests::backend_from_env().await?;
    let r = run(backend, 3).await?;
    println!("terms {:?}, {} overlaps", r.terms, r.overlaps);
    if r.overlaps > 0 || r.terms.len() != 3 || !r.terms.windows(2).all(|w| w[0] < w[1]) {
        return Err("two leaders at once, a node never led, or a term went backwards".into());
    }
    Ok(())
}
