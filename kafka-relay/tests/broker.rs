//! The suite's broker is Apache Kafka in KRaft mode, not a protocol stand-in: it answers with the
//! cluster id its log directory was formatted with, and advertises the APIs only Apache Kafka 4
//! has (the KRaft quorum, the new consumer-group and share-group protocols, transactions) and
//! none of the ZooKeeper era's inter-broker ones.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use taskpool_testkit::required_env;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Asks the broker for its API versions (ApiVersions v0): the API keys it serves.
fn advertised_api_keys(bootstrap: &str) -> Vec<i16> {
    let mut stream = TcpStream::connect(bootstrap).expect("connect to the broker");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let client_id = b"taskpool-test";
    let mut request = Vec::new();
    request.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    request.extend_from_slice(&0i16.to_be_bytes()); // version 0
    request.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    request.extend_from_slice(&i16::try_from(client_id.len()).unwrap().to_be_bytes());
    request.extend_from_slice(client_id);
    let size = i32::try_from(request.len()).unwrap().to_be_bytes();
    stream.write_all(&size).unwrap();
    stream.write_all(&request).unwrap();

    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut response = vec![0u8; usize::try_from(i32::from_be_bytes(size)).unwrap()];
    stream.read_exact(&mut response).unwrap();
    let int16 = |at: usize| i16::from_be_bytes([response[at], response[at + 1]]);
    assert_eq!(&response[..4], &7i32.to_be_bytes(), "correlation id");
    assert_eq!(int16(4), 0, "ApiVersions error code");
    let count = i32::from_be_bytes(response[6..10].try_into().unwrap());
    (0..usize::try_from(count).unwrap())
        .map(|i| int16(10 + i * 6))
        .collect()
}

#[test]
fn the_broker_is_apache_kafka_in_kraft_mode() {
    let bootstrap = required_env("KAFKA_BOOTSTRAP");
    let keys = advertised_api_keys(&bootstrap);
    for (key, api) in [
        (55, "DescribeQuorum (KRaft)"),
        (68, "ConsumerGroupHeartbeat (KIP-848)"),
        (76, "ShareGroupHeartbeat (share groups)"),
        (78, "ShareFetch (share groups)"),
        (22, "InitProducerId"),
        (26, "EndTxn (transactions)"),
    ] {
        assert!(
            keys.contains(&key),
            "the broker does not serve {api}: {keys:?}"
        );
    }
    for (key, api) in [
        (4, "LeaderAndIsr"),
        (5, "StopReplica"),
        (6, "UpdateMetadata"),
    ] {
        assert!(
            !keys.contains(&key),
            "the broker serves the ZooKeeper-era {api}: {keys:?}"
        );
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("a client");
    let cluster_id = consumer
        .client()
        .fetch_cluster_id(rdkafka::util::Timeout::After(TIMEOUT))
        .expect("the broker names its cluster");
    assert_eq!(cluster_id, required_env("KAFKA_CLUSTER_ID"));
}
