//! Export the lock metrics to Prometheus: the README's "Monitoring" example.
//!
//! `cargo run -p locks-core --example prometheus` takes a few locks on the memory backend and
//! prints what a Prometheus scrape would read. In a service, install the recorder with an HTTP
//! listener instead (the exporter's default `http-listener` feature):
//! `PrometheusBuilder::new().with_http_listener(([0, 0, 0, 0], 9000)).install()?`.

use std::time::Duration;

use locks_core::metrics_labels;
use locks_core::{AcquireOptions, LockService};
use locks_memory::MemoryBackend;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Histograms with buckets (not summaries), so that `histogram_quantile` can aggregate the
    // p99 wait over every instance.
    let buckets = [
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)?
        .install_recorder()?;
    metrics_labels::describe();

    let locks = LockService::builder(MemoryBackend::new())
        // Opt-in, bounded: one `key_class` per pattern, plus "other".
        .metric_key_patterns(["payment:*"])
        .build()?;
    let guard = locks.acquire("payment:42").await?;
    let busy = AcquireOptions::new().wait_timeout(Duration::from_millis(20));
    let timed_out = locks.acquire_opts("payment:42", busy).await.is_err();
    guard.release().await?;
    locks.with_lock("inventory:7", |_| async {}).await?;
    locks.shutdown().await;

    assert!(timed_out);
    print!("{}", prometheus.render());
    Ok(())
}
