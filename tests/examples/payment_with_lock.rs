//! `#[with_lock]`: the payment service written with the attribute. Four instances receive the
//! same payment requests; each order is charged exactly once, under its lock's fencing token.
//!
//! `cargo run -p locks-tests --example payment_with_lock` (memory) or with
//! `REDIS_URL=redis://host:port`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// The facade crate: one dependency (`locks`, features `macros` and `redis`).
use locks::{LeaseHandle, LockError, LockService, LostReason, with_lock};

/// Proof of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Receipt {
    order_id: u64,
    amount_cents: u64,
    /// The fencing token the charge was made under.
    fence: u64,
}

#[derive(Debug)]
enum PayError {
    /// The lock could not be taken (timeout, store failure, ...).
    Lock(LockError),
    /// The lease was lost before the charge: nothing was charged, retry later.
    LockLost(LostReason),
}

impl From<LockError> for PayError {
    fn from(e: LockError) -> Self {
        PayError::Lock(e)
    }
}

impl fmt::Display for PayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayError::Lock(e) => write!(f, "payment lock: {e}"),
            PayError::LockLost(reason) => write!(f, "payment lock lost ({reason}); not charged"),
        }
    }
}

impl std::error::Error for PayError {}

/// The payment provider (in memory): remembers the charge of every order.
#[derive(Default)]
struct Gateway {
    charges: Mutex<HashMap<u64, (Receipt, u32)>>,
    lookups: AtomicU64,
}

impl Gateway {
    /// The charge already made for this order, if any (the idempotency check; a little slow).
    async fn find_charge(&self, order_id: u64) -> Option<Receipt> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let charges = self.charges.lock().unwrap_or_else(|e| e.into_inner());
        charges.get(&order_id).map(|(receipt, _)| receipt.clone())
    }

    /// Charge the order. A real provider would reject a fence older than the last it saw.
    async fn charge(&self, order_id: u64, amount_cents: u64, fence: u64) -> Receipt {
        let receipt = Receipt {
            order_id,
            amount_cents,
            fence,
        };
        let mut charges = self.charges.lock().unwrap_or_else(|e| e.into_inner());
        charges.entry(order_id).or_insert((receipt.clone(), 0)).1 += 1;
        receipt
    }
}

struct PaymentService {
    locks: LockService,
    gateway: Arc<Gateway>,
}

impl PaymentService {
    /// Charge `order_id` exactly once, however many instances call this concurrently.
    ///
    /// Takes `payment:{order_id}` (ttl 10 s, renewed while the body runs; waits up to 5 s),
    /// runs the body under it and releases it on every path. Callers pass no lease.
    #[with_lock(locks = self.locks, key = "payment:{order_id}", ttl = "10s", wait = "5s")]
    async fn pay(
        &self,
        order_id: u64,
        amount_cents: u64,
        lease: LeaseHandle,
    ) -> Result<Receipt, PayError> {
        // Stop waiting for a slow lookup as soon as the lease is lost.
        let found = tokio::select! {
            biased;
            reason = lease.lost() => return Err(PayError::LockLost(reason)),
            found = self.gateway.find_charge(order_id) => found,
        };
        if let Some(receipt) = found {
            return Ok(receipt); // paid already (by another instance, or an earlier request)
        }
        lease.ensure_held()?; // last cheap check before the irreversible step
        Ok(self
            .gateway
            .charge(order_id, amount_cents, lease.fence())
            .await)
    }
}

/// Runs the example (public so that `tests/tests/patterns.rs` can run it too).
#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    const INSTANCES: usize = 4;
    const ORDERS: u64 = 25;

    let backend = locks_tests::backend_from_env().await?;
    let gateway = Arc::new(Gateway::default());
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        instances.push(PaymentService {
            locks: LockService::builder_arc(backend.clone()).build()?,
            gateway: gateway.clone(),
        });
    }

    // Every instance receives every payment request.
    let runs = instances.iter().map(|service| async move {
        let mut receipts = Vec::new();
        for order_id in 0..ORDERS {
            receipts.push(service.pay(order_id, 100 * (order_id + 1)).await?);
        }
        Ok::<_, PayError>(receipts)
    });
    let mut all = Vec::new();
    for receipts in futures::future::join_all(runs).await {
        all.extend(receipts?);
    }

    let charges = gateway
        .charges
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let charged_once = charges.values().filter(|(_, n)| *n == 1).count();
    let same_receipt = all
        .iter()
        .all(|r| charges.get(&r.order_id).is_some_and(|(c, _)| c == r));
    println!(
        "{ORDERS} orders x {INSTANCES} instances: {charged_once} charged exactly once, {} \
         requests answered with the existing receipt, {} lookups",
        all.len() - charges.len(),
        gateway.lookups.load(Ordering::Relaxed)
    );
    for service in &instances {
        service.locks.shutdown().await;
    }
    if charged_once != ORDERS as usize || charges.len() != ORDERS as usize || !same_receipt {
        return Err("an order was not charged exactly once".into());
    }
    Ok(())
}
