//! What tests do with a running server: a connection of their own, a schema of their own.

use tokio_postgres::{Client, NoTls};

use super::FixtureError;

/// A connection to `url` (its connection task spawned on the current runtime).
///
/// # Cancel safety
///
/// Cancel safe.
pub async fn connect(url: &str) -> Result<Client, FixtureError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|source| FixtureError::Connect {
            url: url.to_owned(),
            source,
        })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Create a schema no other test uses (`t_` and 24 random hex digits) and return its name, so
/// that tests sharing one server never see each other's tables.
///
/// # Cancel safety
///
/// Cancel safe (at worst an empty schema is left behind).
pub async fn fresh_schema(url: &str) -> Result<String, FixtureError> {
    let name = format!("t_{:024x}", fastrand::u128(..) >> 32);
    let client = connect(url).await?;
    client
        .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
        .await
        .map_err(|source| FixtureError::Connect {
            url: url.to_owned(),
            source,
        })?;
    Ok(name)
}
