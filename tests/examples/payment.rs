//! Mutex: payment per order id — four instances receive the same payment requests; under the
//! order's lock each checks whether the order is paid and charges it with the lock's fencing
//! token. Each order is charged exactly once.
//!
//! `cargo run -p locks-tests --example payment` (memory) or with `REDIS_URL=redis://host:port`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use locks_core::{LockBackend, LockError, LockService};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A payment provider that rejects a charge carrying an older fence than it has seen.
#[derive(Default)]
struct Provider {
    charges: Mutex<HashMap<u64, (u32, u64)>>, // order -> (times charged, highest fence)
}

impl Provider {
    fn charged(&self, order: u64) -> bool {
        self.charges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&order)
    }

    fn charge(&self, order: u64, fence: u64) {
        let mut charges = self.charges.lock().unwrap_or_else(|p| p.into_inner());
        let (times, highest) = charges.entry(order).or_insert((0, 0));
        if fence >= *highest {
            *times += 1;
            *highest = fence;
        } // else: a stale holder, rejected
    }
}

/// What the example saw.
#[derive(Debug)]
pub struct Report {
    /// Orders charged exactly once (all of them).
    pub charged_once: u64,
    /// Orders charged more than once (none).
    pub double_charges: u64,
    /// Requests that found their order paid already.
    pub already_paid: u64,
}

/// `instances` services all receive the same `orders` payment requests.
pub async fn run(
    backend: Arc<dyn LockBackend>,
    instances: usize,
    orders: u64,
) -> Result<Report, Error> {
    let provider = Arc::new(Provider::default());
    let already_paid = Arc::new(AtomicU64::new(0));
    let mut running = Vec::new();
    for _ in 0..instances {
        let locks = LockService::builder_arc(backend.clone()).build()?;
        let (provider, already_paid) = (provider.clone(), already_paid.clone());
        running.push(tokio::spawn(async move {
            for order in 0..orders {
                let provider = provider.clone();
                // The lock: one instance at a time per order; released on every path.
                let paid_already = locks
                    .with_lock(&format!("payment:{order}"), |lease| async move {
                        if provider.charged(order) {
                            return Ok(true);
                        }
                        lease.ensure_held()?; // last cheap check before the irreversible step
                        provider.charge(order, lease.fence()); // the fence goes along
                        Ok::<_, LockError>(false)
                    })
                    .await??;
                if paid_already {
                    already_paid.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<_, LockError>(())
        }));
    }
    for instance in running {
        instance.await??;
    }
    let charges = provider.charges.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Report {
        charged_once: charges.values().filter(|(n, _)| *n == 1).count() as u64,
        double_charges: charges.values().filter(|(n, _)| *n > 1).count() as u64,
        already_paid: already_paid.load(Ordering::Relaxed),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let backend = locks_tests::backend_from_env().await?;
    let r = run(backend, 4, 50).await?;
    println!(
        "50 orders x 4 instances: {} charged once, {} charged twice, {} requests found the \
         order paid",
        r.charged_once, r.double_charges, r.already_paid
    );
    if r.double_charges > 0 || r.charged_once != 50 {
        return Err("an order was not charged exactly once".into());
    }
    Ok(())
}
