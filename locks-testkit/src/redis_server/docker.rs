//! The last resort of the fixture, behind the `docker` feature: a Redis container started
//! through `testcontainers` (image [`DEFAULT_IMAGE`](super::DEFAULT_IMAGE), or the one named
//! by [`IMAGE_ENV`](super::IMAGE_ENV)). Without the feature, reaching it is
//! [`FixtureError::NoServer`].

use super::{FixtureError, RedisServer, RedisServerConfig};

/// Without the `docker` feature: no server could be found.
#[cfg(not(feature = "docker"))]
pub(super) async fn start_docker(_cfg: &RedisServerConfig) -> Result<RedisServer, FixtureError> {
    Err(FixtureError::NoServer {
        detail: "; no redis-server binary on PATH, in /usr/bin or /usr/local/bin, \
                 no LOCKS_TEST_REDIS_URL, and the `docker` feature is off"
            .to_owned(),
    })
}

/// A container of the configured image running `redis-server` with `cfg`'s arguments, once it
/// answers PING.
#[cfg(feature = "docker")]
pub(super) async fn start_docker(cfg: &RedisServerConfig) -> Result<RedisServer, FixtureError> {
    use std::time::{Duration, Instant};

    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{GenericImage, ImageExt};

    use super::probe::ping;
    use super::{Backing, DEFAULT_IMAGE, IMAGE_ENV, POLL_INTERVAL};

    let image = std::env::var(IMAGE_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_owned());
    let (name, tag) = split_image(&image);
    let mut cmd: Vec<String> = ["redis-server", "--save", "", "--appendonly", "no"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    cmd.extend(cfg.args.iter().cloned());
    let docker_err = |source| FixtureError::Docker {
        image: image.clone(),
        source,
    };
    let container = GenericImage::new(name, tag)
        .with_exposed_port(6379.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .with_cmd(cmd)
        .with_startup_timeout(cfg.timeout.max(Duration::from_secs(60)))
        .start()
        .await
        .map_err(docker_err)?;
    let host = container.get_host().await.map_err(docker_err)?.to_string();
    let port = container
        .get_host_port_ipv4(6379.tcp())
        .await
        .map_err(docker_err)?;
    let url = format!("redis://{host}:{port}");
    let deadline = Instant::now() + cfg.timeout;
    while ping(url.as_str()).await.is_err() {
        if Instant::now() >= deadline {
            return Err(FixtureError::NotReady {
                port,
                timeout: cfg.timeout,
                log_tail: format!("(container {} of {image})", container.id()),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Ok(RedisServer {
        backing: Backing::Docker {
            container: Box::new(container),
            url,
            port,
        },
    })
}

/// `name:tag` → (`name`, `tag`), where a `:` before the last `/` belongs to a registry host.
#[cfg(feature = "docker")]
fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
        _ => (image.to_owned(), "latest".to_owned()),
    }
}

#[cfg(all(test, feature = "docker"))]
mod tests {
    use super::*;

    #[test]
    fn splits_images() {
        assert_eq!(
            split_image("redis:7.4"),
            ("redis".to_owned(), "7.4".to_owned())
        );
        assert_eq!(
            split_image("registry:5000/redis"),
            ("registry:5000/redis".to_owned(), "latest".to_owned())
        );
    }
}
