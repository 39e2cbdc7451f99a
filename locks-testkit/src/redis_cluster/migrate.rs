//! Moving a slot from one primary to another, step by step (as `redis-cli --cluster reshard`
//! does), so a test can keep working on a key of that slot while it moves.

use super::{RedisCluster, failed};
use crate::redis_server::FixtureError;

impl RedisCluster {
    /// Step 1 of moving `slot` from primary `from` to primary `to`: `CLUSTER SETSLOT slot
    /// IMPORTING` on `to`, then `MIGRATING` on `from`. From now on `from` answers `ASK` for the
    /// keys of the slot it no longer has.
    pub async fn begin_migration(
        &self,
        slot: u16,
        from: usize,
        to: usize,
    ) -> Result<(), FixtureError> {
        let (from_id, to_id) = (self.id(from)?, self.id(to)?);
        self.setslot(to, slot, "IMPORTING", &from_id).await?;
        self.setslot(from, slot, "MIGRATING", &to_id).await
    }

    /// Step 2: moves every key of `slot` still on `from` to `to` (`CLUSTER GETKEYSINSLOT`,
    /// `MIGRATE ... KEYS`). Returns how many keys it moved.
    pub async fn move_keys(
        &self,
        slot: u16,
        from: usize,
        to: usize,
    ) -> Result<usize, FixtureError> {
        let port = self.node(to).map_err(|e| failed("MIGRATE", e))?.port();
        let mut moved = 0;
        loop {
            let keys: Vec<String> = self
                .query(
                    from,
                    redis::cmd("CLUSTER")
                        .arg("GETKEYSINSLOT")
                        .arg(slot)
                        .arg(100),
                )
                .await
                .map_err(|e| failed("CLUSTER GETKEYSINSLOT", e))?;
            if keys.is_empty() {
                return Ok(moved);
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg("127.0.0.1")
                .arg(port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("REPLACE")
                .arg("KEYS")
                .arg(&keys);
            let _: redis::Value = self
                .query(from, &migrate)
                .await
                .map_err(|e| failed("MIGRATE", e))?;
            moved += keys.len();
        }
    }

    /// Step 3: assigns `slot` to `to` on every live primary (`CLUSTER SETSLOT slot NODE`), the
    /// new owner first, and waits until the cluster is settled again.
    pub async fn finish_migration(
        &self,
        slot: u16,
        from: usize,
        to: usize,
    ) -> Result<(), FixtureError> {
        let to_id = self.id(to)?;
        self.setslot(to, slot, "NODE", &to_id).await?;
        self.setslot(from, slot, "NODE", &to_id).await?;
        for node in 0..self.nodes().len() {
            if node == to || node == from || self.nodes()[node].pid().is_none() {
                continue;
            }
            let role: Vec<redis::Value> = self
                .query(node, &redis::cmd("ROLE"))
                .await
                .map_err(|e| failed("ROLE", e))?;
            let primary = role
                .into_iter()
                .next()
                .and_then(|r| redis::from_redis_value::<String>(r).ok())
                .is_some_and(|r| r == "master");
            if primary {
                self.setslot(node, slot, "NODE", &to_id).await?;
            }
        }
        self.wait_ok().await
    }

    /// Moves `slot` from `from` to `to` in one go (all three steps).
    pub async fn migrate_slot(
        &self,
        slot: u16,
        from: usize,
        to: usize,
    ) -> Result<usize, FixtureError> {
        self.begin_migration(slot, from, to).await?;
        let moved = self.move_keys(slot, from, to).await?;
        self.finish_migration(slot, from, to).await?;
        Ok(moved)
    }

    fn id(&self, node: usize) -> Result<String, FixtureError> {
        self.ids
            .get(node)
            .cloned()
            .ok_or_else(|| failed("find a node id", format!("no node {node}")))
    }

    async fn setslot(
        &self,
        node: usize,
        slot: u16,
        state: &str,
        id: &str,
    ) -> Result<(), FixtureError> {
        self.query::<()>(
            node,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(id),
        )
        .await
        .map_err(|e| failed("CLUSTER SETSLOT", e))
    }
}
