//! Tracing: a `lock.acquire` span per acquire (key, kind, backend, attempts, waited, outcome,
//! fence), a `lock.hold` span per held lease whose children are its `lock.renew` spans, and
//! `lock.lost` / `lock.release_failed` events inside the hold. Captured by a test layer on a
//! `tracing-subscriber` registry, set as the thread's default (the tests run on one thread).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locks_core::{AcquireOptions, LockError, LockService};
use locks_memory::MemoryBackend;
use locks_testkit::faulty::FaultyBackend;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Instrument, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as the layer saw it: its name, fields (last recorded value), parent's name, and the
/// names of the spans it follows from.
#[derive(Debug, Clone, Default)]
struct SpanRec {
    name: String,
    fields: HashMap<String, String>,
    parent: Option<String>,
    follows: Vec<String>,
    /// Index of the parent span's record.
    parent_index: Option<usize>,
}

/// An event: its name, fields, and the name of the span it belongs to.
#[derive(Debug, Clone)]
struct EventRec {
    name: String,
    fields: HashMap<String, String>,
    span: Option<String>,
    span_index: Option<usize>,
}

#[derive(Default)]
struct Captured {
    spans: Vec<SpanRec>,
    /// Live span id -> index in `spans`.
    index: HashMap<u64, usize>,
    events: Vec<EventRec>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut rec = SpanRec {
            name: attrs.metadata().name().to_owned(),
            ..SpanRec::default()
        };
        attrs.record(&mut Fields(&mut rec.fields));
        let parent = ctx.span(id).and_then(|s| s.parent());
        let mut c = self.0.lock().unwrap();
        if let Some(p) = parent {
            rec.parent = Some(p.name().to_owned());
            rec.parent_index = c.index.get(&p.id().into_u64()).copied();
        }
        let at = c.spans.len();
        c.spans.push(rec);
        c.index.insert(id.into_u64(), at);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut c = self.0.lock().unwrap();
        if let Some(&at) = c.index.get(&id.into_u64()) {
            values.record(&mut Fields(&mut c.spans[at].fields));
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, _ctx: Context<'_, S>) {
        let mut c = self.0.lock().unwrap();
        let from = c
            .index
            .get(&follows.into_u64())
            .map(|&i| c.spans[i].name.clone());
        if let (Some(&at), Some(from)) = (c.index.get(&id.into_u64()), from) {
            c.spans[at].follows.push(from);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let span = ctx.event_span(event);
        let mut c = self.0.lock().unwrap();
        let span_index = span
            .as_ref()
            .and_then(|s| c.index.get(&s.id().into_u64()).copied());
        c.events.push(EventRec {
            name: event.metadata().name().to_owned(),
            fields,
            span: span.map(|s| s.name().to_owned()),
            span_index,
        });
    }
}

impl Capture {
    fn spans(&self, name: &str) -> Vec<SpanRec> {
        let c = self.0.lock().unwrap();
        c.spans.iter().filter(|s| s.name == name).cloned().collect()
    }

    fn events(&self, name: &str) -> Vec<EventRec> {
        let c = self.0.lock().unwrap();
        c.events
            .iter()
            .filter(|e| e.name == name)
            .cloned()
            .collect()
    }

    fn span_at(&self, at: usize) -> SpanRec {
        self.0.lock().unwrap().spans[at].clone()
    }
}

fn field<'a>(s: &'a HashMap<String, String>, name: &str) -> &'a str {
    s.get(name).map(String::as_str).unwrap_or("<missing>")
}

fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, guard)
}

fn service(faulty: &FaultyBackend) -> LockService {
    LockService::builder(faulty.clone())
        .default_ttl(Duration::from_secs(10))
        .build()
        .expect("service")
}

/// The acquire span carries every field; the hold is a child of the caller's span (not of the
/// acquire) and follows from the acquire; renewals are children of the hold.
#[tokio::test(start_paused = true)]
async fn acquire_and_hold_spans_with_renewals_as_children_of_the_hold() {
    let (cap, _guard) = capture();
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let locks = service(&faulty);

    let request = tracing::info_span!("request");
    let guard = locks
        .acquire("payment:42")
        .instrument(request)
        .await
        .expect("acquire");
    let acquires = cap.spans("lock.acquire");
    assert_eq!(acquires.len(), 1, "{acquires:?}");
    let a = &acquires[0];
    assert_eq!(a.parent.as_deref(), Some("request"));
    assert_eq!(field(&a.fields, "key"), "payment:42");
    assert_eq!(field(&a.fields, "kind"), "mutex");
    assert_eq!(field(&a.fields, "backend"), "memory");
    assert_eq!(field(&a.fields, "attempts"), "1");
    assert_eq!(field(&a.fields, "outcome"), "acquired");
    assert_eq!(field(&a.fields, "fence"), guard.fence().to_string());
    assert_eq!(field(&a.fields, "waited"), "0ns");

    let holds = cap.spans("lock.hold");
    assert_eq!(holds.len(), 1, "{holds:?}");
    let h = &holds[0];
    assert_eq!(h.parent.as_deref(), Some("request"));
    assert_eq!(h.follows, vec!["lock.acquire".to_owned()]);
    assert_eq!(field(&h.fields, "key"), "payment:42");
    assert_eq!(field(&h.fields, "fence"), guard.fence().to_string());

    tokio::time::sleep(Duration::from_millis(10_500)).await; // two renewals
    let renews = cap.spans("lock.renew");
    assert_eq!(renews.len(), 2, "{renews:?}");
    for r in &renews {
        assert_eq!(r.parent.as_deref(), Some("lock.hold"));
        assert_eq!(field(&r.fields, "result"), "ok");
    }
    guard.release().await.expect("release");
    assert_eq!(
        field(&cap.spans("lock.hold")[0].fields, "outcome"),
        "released"
    );
    locks.shutdown().await;
}

/// Every way an acquire ends is the span's `outcome`, with the attempts sent.
#[tokio::test(start_paused = true)]
async fn acquire_outcomes_contended_timeout_and_error() {
    let (cap, _guard) = capture();
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let locks = service(&faulty);
    let held = locks.acquire("k").await.expect("acquire");

    let err = locks.try_acquire("k").await;
    assert!(matches!(err, Err(LockError::Contended { .. })), "{err:?}");
    let opts = AcquireOptions::new().wait_timeout(Duration::from_secs(1));
    let err = locks.acquire_opts("k", opts).await;
    let Err(LockError::AcquireTimeout { attempts, .. }) = err else {
        panic!("{err:?}")
    };
    faulty.fail_next(1);
    let err = locks.try_acquire("other").await;
    assert!(matches!(err, Err(LockError::Backend { .. })), "{err:?}");

    let spans = cap.spans("lock.acquire");
    let outcomes: Vec<(&str, &str)> = spans
        .iter()
        .map(|s| (field(&s.fields, "outcome"), field(&s.fields, "attempts")))
        .collect();
    let attempts = attempts.to_string();
    assert_eq!(
        outcomes,
        vec![
            ("acquired", "1"),
            ("contended", "1"),
            ("timeout", attempts.as_str()),
            ("error", "1"),
        ]
    );
    assert_eq!(field(&spans[2].fields, "waited"), "1s");
    assert_eq!(field(&spans[1].fields, "fence"), "<missing>");
    held.release().await.expect("release");
    locks.shutdown().await;
}

/// A lost lease is a `lock.lost` event inside its hold span, with the reason; a release the
/// store refuses or does not confirm is a `lock.release_failed` event there too.
#[tokio::test(start_paused = true)]
async fn lost_leases_and_failed_releases_are_events_of_the_hold() {
    let (cap, _guard) = capture();
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let locks = service(&faulty);

    let guard = locks.acquire("job:1").await.expect("acquire");
    locks.force_release("job:1").await.expect("force");
    tokio::time::sleep(Duration::from_secs(6)).await; // the renewal hears "not owner"
    let lost = cap.events("lock.lost");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].span.as_deref(), Some("lock.hold"));
    assert_eq!(field(&lost[0].fields, "reason"), "not_owner");
    assert_eq!(field(&lost[0].fields, "key"), "job:1");
    assert_eq!(field(&lost[0].fields, "fence"), guard.fence().to_string());
    let renew = cap.spans("lock.renew");
    assert_eq!(field(&renew[0].fields, "result"), "not_owner");
    let err = guard.release().await;
    assert!(matches!(err, Err(LockError::NotOwner { .. })), "{err:?}");

    let guard = locks.acquire("job:2").await.expect("acquire");
    faulty.fail_next(1);
    let err = guard.release().await;
    assert!(matches!(err, Err(LockError::Backend { .. })), "{err:?}");

    let failed = cap.events("lock.release_failed");
    let results: Vec<(&str, &str)> = failed
        .iter()
        .map(|e| (field(&e.fields, "key"), field(&e.fields, "result")))
        .collect();
    assert_eq!(results, vec![("job:1", "not_owner"), ("job:2", "error")]);
    for e in &failed {
        assert_eq!(e.span.as_deref(), Some("lock.hold"));
        let hold = cap.span_at(e.span_index.expect("hold span"));
        assert_eq!(field(&hold.fields, "key"), field(&e.fields, "key"));
    }
    let holds = cap.spans("lock.hold");
    assert_eq!(field(&holds[0].fields, "outcome"), "lost");
    assert!(
        holds.iter().all(|h| h.parent_index.is_none()),
        "no caller span here"
    );

    // A deadline passing with the store unreachable is a loss too.
    let guard = locks.acquire("job:3").await.expect("acquire");
    faulty.set_unavailable(true);
    tokio::time::sleep(Duration::from_secs(11)).await;
    let lost = cap.events("lock.lost");
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert_eq!(field(&lost[1].fields, "reason"), "deadline");
    faulty.set_unavailable(false);
    drop(guard);
    locks.shutdown().await;
}
