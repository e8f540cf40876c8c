//! tasklist-api started inside a benchmark, on a free loopback port.

use std::time::{Duration, Instant};

use tasklist_api::config::{Config, Layered};
use tasklist_api::kafka::status;
use tasklist_api::server::Running;
use taskpool_service::shutdown::Shutdown;

use crate::setup::BenchResult;

/// The settings every in-process tasklist-api of a benchmark has: MongoDB and Kafka of the
/// test servers, a database, topic prefix and consumer group of `prefix`'s own, and the
/// development sign-in for `users` (`name:group+group,...`). Keys without the prefix.
pub fn settings(
    mongo_uri: &str,
    bootstrap: &str,
    prefix: &str,
    users: &str,
) -> Vec<(String, String)> {
    [
        ("MONGODB__URI", mongo_uri.to_string()),
        ("MONGODB__DATABASE", prefix.replace('-', "_")),
        ("KAFKA__BOOTSTRAP_SERVERS", bootstrap.to_string()),
        ("KAFKA__TOPIC_PREFIX", prefix.to_string()),
        ("KAFKA__GROUP_ID", prefix.to_string()),
        ("DEV_SIGN_IN__USERS", users.to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

/// Starts tasklist-api with `settings` until `stop`; its address and the running service.
pub async fn start(
    settings: Vec<(String, String)>,
    stop: Shutdown,
) -> BenchResult<(String, Running)> {
    let config = config(settings)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let running = tasklist_api::server::start(config, listener, stop)
        .await
        .map_err(|e| format!("tasklist-api: {e}"))?;
    Ok((address.to_string(), running))
}

/// tasklist-api's configuration from `settings`.
pub fn config(settings: Vec<(String, String)>) -> BenchResult<Config> {
    let env = settings
        .into_iter()
        .map(|(key, value)| (format!("{}{key}", tasklist_api::config::ENV_PREFIX), value));
    Config::from_sources("", env).map_err(|e| e.to_string())
}

/// Waits until the projection's consumer group has committed the end of every partition of
/// its topics: what was published before has been projected (offsets are committed each
/// second, after their batch is written).
pub async fn caught_up(config: &Config, deadline: Duration) -> BenchResult<()> {
    let until = Instant::now() + deadline;
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        poll.tick().await;
        let status = status::read(config).await.map_err(|e| e.to_string())?;
        let behind: i64 = status.partitions.iter().map(|p| p.lag).sum();
        if behind == 0 {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!(
                "tasklist-api still {behind} events behind after {deadline:?}"
            ));
        }
    }
}
