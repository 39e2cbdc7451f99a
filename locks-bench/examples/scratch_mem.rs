use std::time::{Duration, Instant};
use locks_core::{LockService, LockBackend, OwnerToken, LockKey};
use locks_memory::MemoryBackend;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or("svc".into());
    let flavor = args.get(2).cloned().unwrap_or("ct".into());
    let rt = if flavor == "mt" { tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap() } else { tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap() };
    rt.block_on(async {
        let backend = MemoryBackend::new();
        let svc = LockService::new(backend.clone()).unwrap();
        let key = LockKey::new("_lock:", "k").unwrap();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(3) {
            for _ in 0..256 {
                match mode.as_str() {
                    "svc" => { svc.acquire("k").await.unwrap().release().await.unwrap(); }
                    "backend" => { let t = OwnerToken::new(); backend.try_acquire(&key, t, Duration::from_secs(30)).await.unwrap(); backend.release(&key, t).await.unwrap(); }
                    "token" => { std::hint::black_box(OwnerToken::new()); }
                    _ => panic!(),
                }
            }
            n += 256;
        }
        println!("{mode} {flavor}: {:?} per op", start.elapsed() / n as u32);
    });
}
