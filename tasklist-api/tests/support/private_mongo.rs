//! A MongoDB-wire server of a test's own, which it may stop and start again.

use taskpool_testkit::{required_env, wait_for};

use super::DEADLINE;

/// A private MongoDB-wire server (so a test may stop and restart it), keeping its data in a
/// temporary directory across restarts.
pub struct PrivateMongo {
    pub port: u16,
    pub data: std::path::PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateMongo {
    pub async fn start() -> PrivateMongo {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = std::env::temp_dir().join(format!("tasklist-mongo-{}", uuid::Uuid::new_v4()));
        let mut mongo = PrivateMongo {
            port,
            data,
            child: None,
        };
        mongo.restart().await;
        mongo
    }

    pub fn uri(&self) -> String {
        // Quick heartbeats: the driver notices the restarted server within a second.
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true&heartbeatFrequencyMS=500&serverSelectionTimeoutMS=5000",
            self.port
        )
    }

    /// Starts the server (again) on the same port and data.
    pub async fn restart(&mut self) {
        let child = tokio::process::Command::new(required_env("MONGO_PYTHON"))
            .arg(required_env("MONGO_LAUNCHER"))
            .args([
                "--host",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "--data-dir",
            ])
            .arg(&self.data)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(match std::env::var("TASKPOOL_TEST_MONGO_LOG") {
                Ok(path) => std::process::Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .unwrap(),
                ),
                Err(_) => std::process::Stdio::null(),
            })
            .kill_on_drop(true)
            .spawn()
            .expect("start a private MongoDB-wire server");
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        wait_for("the private MongoDB to listen", DEADLINE, || async {
            tokio::net::TcpStream::connect(&address)
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }

    /// Kills the server at once (no clean shutdown).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
