//! The tasklist API served over an empty embedded view, with two development users.

use std::sync::Arc;

use taskpool_service::shutdown::{self, ShutdownTrigger};
use taskpool_tasklist::identity::Authenticator;
use taskpool_tasklist::identity::dev::{DevSignIn, DevUser};
use taskpool_tasklist::metrics::Metrics;
use taskpool_tasklist::serve::{Api, serve_api};
use taskpool_tasklist::settings::{HttpConfig, StreamConfig};
use taskpool_tasklist::view::EmbeddedView;
use tokio_util::task::TaskTracker;

pub async fn served(read_deadline_secs: u64) -> (String, ShutdownTrigger, TaskTracker) {
    let http = HttpConfig {
        read_deadline_secs,
        ..HttpConfig::default()
    };
    served_with(http, StreamConfig::default()).await
}

pub async fn served_with(
    http: HttpConfig,
    stream: StreamConfig,
) -> (String, ShutdownTrigger, TaskTracker) {
    let user = |name: &str| DevUser {
        name: name.into(),
        groups: vec!["muppets".into()],
    };
    let sign_in = DevSignIn::new(vec![user("kermit"), user("piggy")]);
    let api = Api {
        view: Arc::new(EmbeddedView::new()),
        auth: Authenticator::new(&sign_in.identity_config()).unwrap(),
        metrics: Arc::new(Metrics::default()),
        stream,
        http,
        action_rules: Default::default(),
        dev_sign_in: Some(sign_in),
        actions: None,
        outcomes: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (trigger, shutdown) = shutdown::channel();
    let tasks = TaskTracker::new();
    serve_api(api, listener, &tasks, shutdown).await.unwrap();
    (address, trigger, tasks)
}

/// Stops the server and waits until all of it has ended.
pub async fn stop(trigger: ShutdownTrigger, tasks: TaskTracker) {
    trigger.trigger();
    tasks.close();
    tasks.wait().await;
}
