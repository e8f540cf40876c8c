//! The benchmarks' topics: a unique prefix per run, and deleting them afterwards.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use taskpool_schemas::Topics;

use crate::server_env;

/// Deletes a benchmark's topics (those of the events and of the actions; absent ones are only
/// reported), so repeated runs do not fill the broker. Through the plaintext listener, whatever
/// the benchmark used.
pub(crate) async fn delete_topics(prefix: &str) {
    let Ok(bootstrap) = server_env("KAFKA_BOOTSTRAP") else {
        return;
    };
    let Ok(admin) = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create::<AdminClient<DefaultClientContext>>()
    else {
        return;
    };
    let topics = Topics::new(prefix);
    let [tasks, data_entries] = topics.all();
    let all = [tasks, data_entries, &topics.commands, &topics.outcomes];
    if let Err(e) = admin.delete_topics(&all, &AdminOptions::new()).await {
        eprintln!("could not delete the benchmark topics of {prefix}: {e}");
    }
}

pub(crate) fn unique_prefix(name: &str) -> String {
    format!(
        "bench-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}
