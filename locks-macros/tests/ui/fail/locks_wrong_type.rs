use locks_core::LockError;
use locks_macros::with_lock;

struct Payments {
    name: String,
}

impl Payments {
    #[with_lock(locks = self.name, key = "payment:{order_id}")]
    async fn charge(&self, order_id: u64) -> Result<u64, LockError> {
        Ok(order_id)
    }
}

fn main() {}
