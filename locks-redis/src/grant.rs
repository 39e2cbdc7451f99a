//! What a message on a lock's release channel says: `released` (a release, a force release),
//! or `granted:<token>:<fence>` (a fair mutex's release handed the lease to the head of its
//! queue). Both notification paths ([`pubsub`](crate::pubsub) on one server,
//! [`sharded`](crate::sharded) on a cluster) keep a [`Signal`] per channel and report it
//! through [`wait`].

use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{Signal, Wake};
use locks_core::{BackendError, OwnerToken, ReleaseListener};
use tokio::sync::watch;

/// The grant a message payload names, if it is one.
pub(crate) fn parse_grant(payload: &[u8]) -> Option<(OwnerToken, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (token, fence) = text.strip_prefix("granted:")?.rsplit_once(':')?;
    Some((token.parse().ok()?, fence.parse().ok()?))
}

/// Record a message with `payload` (`None`: not a message, e.g. a reconnection) in `signal`.
pub(crate) fn record(signal: &mut Signal, payload: Option<&[u8]>) {
    match payload.and_then(parse_grant) {
        Some((token, fence)) => signal.granted(token, fence),
        None => signal.released(),
    }
}

/// A listener's wait on its channel's signal `rx` for up to `max`, given the generation it had
/// seen (updated): one grant, a notification, or a time-out. The one body of both listeners'
/// `wait_for_release`.
pub(crate) async fn wait(
    rx: &mut watch::Receiver<Signal>,
    seen: &mut u64,
    max: Duration,
) -> Result<Wake, BackendError> {
    match tokio::time::timeout(max, rx.changed()).await {
        Ok(Ok(())) => {
            let signal = *rx.borrow_and_update();
            let wake = signal.wake_since(*seen);
            *seen = signal.generation;
            Ok(match wake {
                Wake::TimedOut => Wake::Notified,
                other => other,
            })
        }
        // Cannot happen while the listener holds a reference; do not spin if it does.
        Ok(Err(_)) => Err(BackendError::transient(
            "redis release notifications stopped",
        )),
        Err(_) => Ok(Wake::TimedOut),
    }
}

/// A listener that reports grants as plain notifications, for a backend with
/// [`replica_ack`](crate::RedisBackendBuilder::replica_ack): a grant is written by a release,
/// which waits for no replica, so the waiter must take its lease through an acquire (its own
/// lease, renewed), which does.
pub(crate) struct NoGrants(pub(crate) Box<dyn ReleaseListener>);

#[async_trait]
impl ReleaseListener for NoGrants {
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
        Ok(match self.0.wait_for_release(max).await? {
            Wake::Granted { .. } => Wake::Notified,
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports one fixed wake.
    struct Fixed(Wake);

    #[async_trait]
    impl ReleaseListener for Fixed {
        async fn wait_for_release(&mut self, _max: Duration) -> Result<Wake, BackendError> {
            Ok(self.0)
        }
    }

    #[tokio::test]
    async fn with_replica_acks_a_grant_is_only_a_notification() {
        let granted = Wake::Granted {
            token: OwnerToken::new(),
            fence: 9,
        };
        let mut plain = Fixed(granted);
        assert_eq!(
            plain.wait_for_release(Duration::ZERO).await.ok(),
            Some(granted)
        );
        for (wake, reported) in [
            (granted, Wake::Notified),
            (Wake::Notified, Wake::Notified),
            (Wake::TimedOut, Wake::TimedOut),
        ] {
            let mut l = NoGrants(Box::new(Fixed(wake)));
            assert_eq!(
                l.wait_for_release(Duration::ZERO).await.ok(),
                Some(reported)
            );
        }
    }

    #[test]
    fn grants_are_parsed_and_anything_else_is_a_release() {
        let token = OwnerToken::new();
        let payload = format!("granted:{}:1734000000000123", token.to_hyphenated());
        assert_eq!(
            parse_grant(payload.as_bytes()),
            Some((token, 1_734_000_000_000_123))
        );
        for other in [
            "released",
            "granted:",
            "granted:x:1",
            "granted:{token}:-1",
            "",
        ] {
            assert_eq!(parse_grant(other.as_bytes()), None, "{other}");
        }
        let mut signal = Signal::default();
        record(&mut signal, Some(payload.as_bytes()));
        assert_eq!(signal.grant, Some((token, 1_734_000_000_000_123)));
        assert!(matches!(signal.wake_since(0), Wake::Granted { .. }));
        record(&mut signal, Some(b"released"));
        assert_eq!(
            (signal.generation, signal.wake_since(1)),
            (2, Wake::Notified)
        );
        record(&mut signal, None);
        assert_eq!(
            (signal.generation, signal.wake_since(2)),
            (3, Wake::Notified)
        );
    }
}
