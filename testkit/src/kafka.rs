//! A Kafka broker of a test's own: Apache Kafka started by `scripts/kafka-broker.sh` from the
//! cache `scripts/services.sh` filled, for tests that freeze, kill or restart their broker
//! without disturbing the others.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::{required_env, wait_for};

/// How long a JVM broker may take to listen (a loaded 2-core machine).
const START: Duration = Duration::from_secs(120);

/// A private single-node broker, plaintext, on a port of its own; killed when dropped.
#[derive(Debug)]
pub struct PrivateBroker {
    child: Child,
    pub bootstrap: String,
    port: u16,
    dir: PathBuf,
}

impl PrivateBroker {
    pub async fn start() -> PrivateBroker {
        let dir = std::env::temp_dir().join(format!("kafka-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a directory for the private broker");
        let port = free_port();
        let child = spawn(&dir, port);
        let broker = PrivateBroker {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            port,
            dir,
        };
        broker.wait_until_listening().await;
        broker
    }

    /// Sends `signal` (STOP, CONT, KILL, ...) to the broker's JVM.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("broker running").to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Kills the broker's JVM (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill the broker");
    }

    /// Starts the broker again on the same data and port, after [`PrivateBroker::kill`].
    pub async fn start_again(&mut self) {
        self.child = spawn(&self.dir, self.port);
        self.wait_until_listening().await;
    }

    async fn wait_until_listening(&self) {
        let log = self.dir.join("broker.log");
        wait_for(
            &format!("the private broker to listen (its log: {})", log.display()),
            START,
            || async {
                tokio::net::TcpStream::connect(&self.bootstrap)
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(dir: &std::path::Path, port: u16) -> Child {
    let script = required_env("KAFKA_BROKER_SCRIPT");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("broker.log"))
        .expect("the private broker's log");
    Command::new(script)
        .arg("run")
        .arg(dir)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start a private Kafka broker")
}

/// A port nothing listens on, below Linux's ephemeral range: a port an outgoing connection
/// holds as its local port cannot be bound.
fn free_port() -> u16 {
    for _ in 0..200 {
        let port = 20000 + fastrand::u16(..12000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}
