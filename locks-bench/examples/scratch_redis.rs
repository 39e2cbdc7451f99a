use std::time::{Duration, Instant};
use locks_core::{LockService, LockBackend, OwnerToken, LockKey};
use locks_redis::RedisBackend;
use locks_redis::redis;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args[1].clone();
    let flavor = args.get(2).cloned().unwrap_or("ct".into());
    let rt = if flavor == "mt" { tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap() } else { tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap() };
    rt.block_on(async {
        let backend = RedisBackend::connect(&url).await.unwrap();
        let svc = LockService::new(backend.clone()).unwrap();
        let key = LockKey::new("_lock:", "k").unwrap();
        let client = redis::Client::open(url.as_str()).unwrap();
        let cfg = redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(Duration::from_secs(5))).set_number_of_retries(0);
        let mut conn = client.get_connection_manager_with_config(cfg).await.unwrap();
        for round in 0..3 {
        for mode in ["raw", "backend", "svc"] {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_millis(700) {
                match mode {
                    "svc" => { svc.acquire("k").await.unwrap().release().await.unwrap(); }
                    "backend" => { let t = OwnerToken::new(); backend.try_acquire(&key, t, Duration::from_secs(30)).await.unwrap(); backend.release(&key, t).await.unwrap(); }
                    "raw" => { let _: Option<String> = redis::cmd("SET").arg("rk").arg("00000000-0000-4000-8000-000000000000").arg("NX").arg("PX").arg(30000).query_async(&mut conn).await.unwrap(); let _: i64 = redis::cmd("DEL").arg("rk").query_async(&mut conn).await.unwrap(); }
                    _ => panic!(),
                }
                n += 1;
            }
            println!("{round} {mode} {flavor}: {:?} per cycle", start.elapsed() / n as u32);
        }
        }
    });
}
