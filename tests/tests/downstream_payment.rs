//! A worked example: how a downstream crate tests *its own* locking with
//! `locks_testkit::recording`.
//!
//! `PaymentService` stands for application code: it locks `payment:{order}`, checks whether the
//! order was already charged (idempotency), and charges through a gateway, passing the lock's
//! fencing token; if the lease is lost before the charge, it gives up. The tests hand it a
//! [`RecordingBackend`] and a fake gateway whose `charge` reports to a probe, then assert what
//! a reviewer would ask: did the charge run under the lock, was every lock released, do two
//! concurrent payments charge once, what happens when someone else holds the lock or the store
//! drops it mid-payment. The last test runs a buggy variant to show an assertion catching it.
//!
//! Time is tokio's paused clock: waits and renewals take virtual time, nothing sleeps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use locks_core::{LeaseHandle, LeaseState, LockError, LockService, LostReason};
use locks_testkit::recording::{LockEventKind, RecordingBackend};
use tokio::time::Instant;

// ------------------------------------------------------------------------------------------
// The application code under test.
// ------------------------------------------------------------------------------------------

/// Proof of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Receipt {
    order_id: u64,
    amount_cents: u64,
    charge_id: u64,
    /// The fencing token the charge was made under.
    fence: u64,
}

#[derive(Debug)]
enum GatewayError {
    Declined(String),
}

#[derive(Debug)]
enum PayError {
    /// The lock could not be taken (timeout, store failure, ...).
    Lock(LockError),
    /// The lease was lost before the charge: nothing was charged, retry later.
    LockLost(LostReason),
    /// The gateway refused.
    Gateway(GatewayError),
}

impl From<LockError> for PayError {
    fn from(e: LockError) -> Self {
        PayError::Lock(e)
    }
}

/// The payment provider.
trait Gateway: Send + Sync {
    /// The charge already made for this order, if any (the idempotency check).
    fn find_charge(&self, order_id: u64) -> BoxFuture<'_, Result<Option<Receipt>, GatewayError>>;

    /// Charge the order. `fence` lets the provider reject a holder whose lock was taken over.
    fn charge(
        &self,
        order_id: u64,
        amount_cents: u64,
        fence: u64,
    ) -> BoxFuture<'_, Result<Receipt, GatewayError>>;
}

struct PaymentService {
    locks: LockService,
    gateway: Arc<dyn Gateway>,
}

impl PaymentService {
    fn new(locks: LockService, gateway: Arc<dyn Gateway>) -> Self {
        PaymentService { locks, gateway }
    }

    /// Charge `order_id` exactly once, however many instances call this concurrently.
    async fn pay(&self, order_id: u64, amount_cents: u64) -> Result<Receipt, PayError> {
        // Waits up to the service's default wait timeout.
        let guard = self.locks.acquire(&format!("payment:{order_id}")).await?;
        let outcome = self.pay_locked(&guard, order_id, amount_cents).await;
        // Release on every path. A refused release changes nothing here: after a charge the
        // fence protected it, and a lost lease was already reported as `LockLost`.
        let _ = guard.release().await;
        outcome
    }

    async fn pay_locked(
        &self,
        lease: &LeaseHandle,
        order_id: u64,
        amount_cents: u64,
    ) -> Result<Receipt, PayError> {
        // The lookup may be slow: stop waiting for it as soon as the lease is lost.
        let found = tokio::select! {
            biased;
            reason = lease.lost() => return Err(PayError::LockLost(reason)),
            found = self.gateway.find_charge(order_id) => found.map_err(PayError::Gateway)?,
        };
        if let Some(receipt) = found {
            return Ok(receipt);
        }
        // Last cheap check before the irreversible step; the fence covers the rest.
        if let LeaseState::Lost(reason) = lease.state() {
            return Err(PayError::LockLost(reason));
        }
        self.gateway
            .charge(order_id, amount_cents, lease.fence())
            .await
            .map_err(PayError::Gateway)
    }

    /// Pay several orders, one at a time (never holding two payment locks at once).
    async fn pay_all(&self, orders: &[(u64, u64)]) -> Vec<Result<Receipt, PayError>> {
        let mut out = Vec::with_capacity(orders.len());
        for &(order_id, amount_cents) in orders {
            out.push(self.pay(order_id, amount_cents).await);
        }
        out
    }
}

/// A buggy variant: it checks under the lock but charges after releasing it, so two
/// instances can both see "not paid" and both charge. Its results look fine; the probe
/// catches it.
struct CheckThenChargeService {
    locks: LockService,
    gateway: Arc<dyn Gateway>,
}

impl CheckThenChargeService {
    async fn pay(&self, order_id: u64, amount_cents: u64) -> Result<Receipt, PayError> {
        let guard = self.locks.acquire(&format!("payment:{order_id}")).await?;
        let found = self
            .gateway
            .find_charge(order_id)
            .await
            .map_err(PayError::Gateway)?;
        let fence = guard.fence();
        guard.release().await?;
        match found {
            Some(receipt) => Ok(receipt),
            None => self
                .gateway
                .charge(order_id, amount_cents, fence) // BUG: the lock is no longer held
                .await
                .map_err(PayError::Gateway),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Test doubles.
// ------------------------------------------------------------------------------------------

/// An in-memory gateway whose `charge` reports to the recorder's probe for `payment:{order}`.
struct FakeGateway {
    recorder: RecordingBackend,
    receipts: Mutex<HashMap<u64, Receipt>>,
    charges: AtomicU64,
    decline_next: AtomicU32,
    lookup_latency: Duration,
}

impl FakeGateway {
    fn new(recorder: &RecordingBackend) -> Arc<Self> {
        Self::with_lookup_latency(recorder, Duration::ZERO)
    }

    /// `find_charge` takes `latency` (virtual time): a slow remote lookup.
    fn with_lookup_latency(recorder: &RecordingBackend, latency: Duration) -> Arc<Self> {
        Arc::new(FakeGateway {
            recorder: recorder.clone(),
            receipts: Mutex::default(),
            charges: AtomicU64::new(0),
            decline_next: AtomicU32::new(0),
            lookup_latency: latency,
        })
    }

    /// Successful charges so far.
    fn charges(&self) -> u64 {
        self.charges.load(Ordering::SeqCst)
    }

    fn decline_next(&self, n: u32) {
        self.decline_next.store(n, Ordering::SeqCst);
    }
}

impl Gateway for FakeGateway {
    fn find_charge(&self, order_id: u64) -> BoxFuture<'_, Result<Option<Receipt>, GatewayError>> {
        Box::pin(async move {
            if !self.lookup_latency.is_zero() {
                tokio::time::sleep(self.lookup_latency).await;
            }
            Ok(self.receipts.lock().unwrap().get(&order_id).cloned())
        })
    }

    fn charge(
        &self,
        order_id: u64,
        amount_cents: u64,
        fence: u64,
    ) -> BoxFuture<'_, Result<Receipt, GatewayError>> {
        Box::pin(async move {
            // The side effect happens now: was `payment:{order}` held, with this fence?
            self.recorder
                .probe(&format!("payment:{order_id}"))
                .hit_with_fence(fence);
            let declined = self
                .decline_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if declined {
                return Err(GatewayError::Declined("card declined".into()));
            }
            let charge_id = self.charges.fetch_add(1, Ordering::SeqCst) + 1;
            let receipt = Receipt {
                order_id,
                amount_cents,
                charge_id,
                fence,
            };
            self.receipts
                .lock()
                .unwrap()
                .insert(order_id, receipt.clone());
            Ok(receipt)
        })
    }
}

fn payments(recorder: &RecordingBackend, gateway: &Arc<FakeGateway>) -> PaymentService {
    let locks = recorder.service().unwrap();
    PaymentService::new(locks, gateway.clone())
}

/// The setup of most tests: a recording backend, a fake gateway that reports to its probe, and
/// the payment service over both.
fn shop() -> (RecordingBackend, Arc<FakeGateway>, PaymentService) {
    let recorder = RecordingBackend::memory();
    let gateway = FakeGateway::new(&recorder);
    let service = payments(&recorder, &gateway);
    (recorder, gateway, service)
}

/// What a successful payment must leave behind, built from the recorder's assertions: one
/// charge, every charge attempt made while its payment lock was held (with that lease's
/// fence), and no lock left held.
fn assert_charged_once_under_lock(recorder: &RecordingBackend, gateway: &FakeGateway) {
    assert_eq!(gateway.charges(), 1);
    recorder.assert_every_hit_under_lock();
    recorder.assert_all_released();
}

// ------------------------------------------------------------------------------------------
// The tests a downstream user writes.
// ------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_charge_happens_under_the_payment_lock() {
    let (recorder, gateway, service) = shop();

    let receipt = service.pay(1, 500).await.unwrap();
    assert_eq!((receipt.order_id, receipt.amount_cents), (1, 500));
    assert_eq!(gateway.charges(), 1);

    recorder.assert_every_hit_under_lock(); // charged while holding payment:1, with its fence
    recorder.assert_all_released();
    let hit = &recorder.probe_hits()[0];
    assert_eq!(hit.fence, Some(receipt.fence));
}

#[tokio::test(start_paused = true)]
async fn concurrent_payments_of_one_order_charge_once() {
    let recorder = RecordingBackend::memory();
    // The lookup takes a little (virtual) time, so the instances really overlap: with an
    // instant gateway and an in-memory store the first instance could pay and release before
    // the others even ask.
    let gateway = FakeGateway::with_lookup_latency(&recorder, Duration::from_millis(1));
    // Three application instances sharing one lock store.
    let instances: Vec<PaymentService> = (0..3).map(|_| payments(&recorder, &gateway)).collect();

    let results = futures::future::join_all(instances.iter().map(|s| s.pay(7, 900))).await;
    let receipts: Vec<Receipt> = results.into_iter().map(|r| r.unwrap()).collect();

    assert_eq!(gateway.charges(), 1, "{}", recorder.timeline());
    assert!(receipts.iter().all(|r| *r == receipts[0]), "{receipts:?}");
    assert_eq!(receipts[0].charge_id, 1);
    // The others really waited for the lock (and then found the receipt).
    assert!(
        recorder
            .events_for("payment:7")
            .iter()
            .any(|e| matches!(e.kind, LockEventKind::Contended { .. }))
    );
    recorder.assert_every_hit_under_lock();
    recorder.assert_all_released();
}

#[tokio::test(start_paused = true)]
async fn the_lock_is_released_when_the_gateway_fails() {
    let (recorder, gateway, service) = shop();

    gateway.decline_next(1);
    let err = service.pay(3, 100).await.unwrap_err();
    assert!(
        matches!(err, PayError::Gateway(GatewayError::Declined(ref m)) if m == "card declined"),
        "{err:?}"
    );
    recorder.assert_not_held("payment:3");
    recorder.assert_all_released();

    // Released, so a retry can take the lock and pay.
    service.pay(3, 100).await.unwrap();
    assert_charged_once_under_lock(&recorder, &gateway); // the declined attempt too
}

#[tokio::test(start_paused = true)]
async fn transient_store_failures_are_retried() {
    let (recorder, gateway, service) = shop();

    recorder.fail_next(3);
    service.pay(4, 100).await.unwrap();
    assert_eq!(recorder.faults().injected(), 3);
    assert_charged_once_under_lock(&recorder, &gateway);
}

#[tokio::test(start_paused = true)]
async fn a_payment_locked_elsewhere_times_out_as_configured() {
    let recorder = RecordingBackend::memory();
    let gateway = FakeGateway::new(&recorder);
    let locks = recorder
        .service_builder()
        .default_wait_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let service = PaymentService::new(locks, gateway.clone());

    let other = recorder
        .hold_elsewhere("payment:9", Duration::from_secs(60))
        .await
        .unwrap();
    let start = Instant::now();
    let err = service.pay(9, 100).await.unwrap_err();
    assert!(
        matches!(err, PayError::Lock(LockError::AcquireTimeout { .. })),
        "{err:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(gateway.charges(), 0);
    recorder.assert_held("payment:9"); // still the other owner's
    recorder.assert_all_released(); // the other owner's lease is not ours to release
    assert!(other.release().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_payment_waits_for_the_other_holder_then_pays() {
    let (recorder, gateway, service) = shop();

    let other = recorder
        .hold_elsewhere("payment:10", Duration::from_secs(60))
        .await
        .unwrap();
    let paying = tokio::spawn(async move { service.pay(10, 100).await });
    // Wait (on the recording, not on the clock) until the payment has been refused once.
    recorder
        .wait_until(|r| {
            r.events_for("payment:10")
                .iter()
                .any(|e| !e.elsewhere && matches!(e.kind, LockEventKind::Contended { .. }))
        })
        .await;
    assert_eq!(gateway.charges(), 0);
    other.release().await.unwrap();

    let receipt = paying.await.unwrap().unwrap();
    assert_eq!(receipt.fence, 2, "the fence after the other owner's");
    assert_charged_once_under_lock(&recorder, &gateway);
}

#[tokio::test(start_paused = true)]
async fn a_lock_revoked_mid_payment_aborts_without_charging() {
    let recorder = RecordingBackend::memory();
    // The idempotency lookup takes 3 s: long enough for a renewal to notice the revoke.
    let gateway = FakeGateway::with_lookup_latency(&recorder, Duration::from_secs(3));
    let service = payments(&recorder, &gateway);

    let start = Instant::now();
    let paying = tokio::spawn(async move { service.pay(5, 100).await });
    recorder.wait_until_held("payment:5").await;
    assert!(recorder.revoke("payment:5").await.unwrap()); // the store drops the lease

    let err = paying.await.unwrap().unwrap_err();
    assert!(
        matches!(err, PayError::LockLost(LostReason::NotOwner)),
        "{err:?}"
    );
    // Noticed at the first renewal, half a ttl in, long before the lookup finished.
    assert_eq!(start.elapsed(), RecordingBackend::SERVICE_TTL / 2);
    assert_eq!(gateway.charges(), 0);
    assert!(recorder.probe_hits().is_empty(), "no charge was attempted");
    let kinds: Vec<LockEventKind> = recorder
        .events_for("payment:5")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            LockEventKind::Acquired,
            LockEventKind::Revoked { had_lease: true },
            LockEventKind::LostExtend,
        ]
    );
    recorder.assert_all_released();
}

#[tokio::test(start_paused = true)]
async fn a_batch_never_holds_two_payment_locks_together() {
    let (recorder, gateway, service) = shop();

    let results = service.pay_all(&[(1, 100), (2, 200), (3, 300)]).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(gateway.charges(), 3);

    recorder.assert_never_held_together(&["payment:1", "payment:2", "payment:3"]);
    recorder.assert_acquired_in_order(&["payment:1", "payment:2", "payment:3"]);
    recorder.assert_every_hit_under_lock();
    recorder.assert_all_released();
}

#[tokio::test(start_paused = true)]
#[should_panic(
    expected = "ran outside the lock:\n  - probe `payment:1` hit #3: `payment:1` was not held"
)]
async fn a_charge_outside_the_lock_is_caught() {
    let recorder = RecordingBackend::memory();
    let gateway = FakeGateway::new(&recorder);
    let buggy = CheckThenChargeService {
        locks: recorder.service().unwrap(),
        gateway: gateway.clone(),
    };

    // The bug is invisible in the result...
    let receipt = buggy.pay(1, 500).await.unwrap();
    assert_eq!(receipt.charge_id, 1);
    recorder.assert_all_released();
    // ...but not to the probe: the charge (#3) came after the release (#2).
    recorder.assert_every_hit_under_lock();
}
