//! The web tasklist in a real browser (headless Chromium through chromedriver), against a
//! single node whose demo engine the test drives: a user is picked, their tasks show, a new
//! task appears, a completed one disappears, a task's details show its data entry. Any error
//! on the page or in its console fails the test. It saves a screenshot
//! (`<target>/tmp/tasklist.png`; the README shows a copy).

use std::process::Stdio;
use std::time::Duration;
use taskpool_engine_commands::Retention;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use taskpool::{Options, SignIn};
use taskpool_collector::{Collector, EngineEvent};
use taskpool_core::SqliteStore;
use taskpool_demo::actions::DemoActions;
use taskpool_demo::{Demo, DemoConfig};
use taskpool_testkit::fixtures::new_task;
use taskpool_testkit::{required_env, wait_for};
use tokio::process::{Child, Command};

const DEADLINE: Duration = Duration::from_secs(30);

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    _child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(required_env("CHROMEDRIVER"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let address = format!("127.0.0.1:{port}");
        wait_for("chromedriver to listen", DEADLINE, || async {
            tokio::net::TcpStream::connect(&address)
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        Driver {
            _child: child,
            url: format!("http://{address}"),
        }
    }

    async fn browser(&self) -> Client {
        let profile =
            std::env::temp_dir().join(format!("taskpool-chromium-{}", std::process::id()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": required_env("CHROMIUM"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1440,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

/// The browser's console log since the last call (chromedriver's log endpoint).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

/// Errors the page logged or threw so far.
async fn page_errors(browser: &Client) -> Vec<String> {
    let log = browser
        .issue_cmd(BrowserLog)
        .await
        .expect("the console log");
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["level"] == "SEVERE")
        .map(|entry| entry["message"].to_string())
        .collect()
}

async fn text_of(browser: &Client, id: &str) -> Option<String> {
    browser.find(Locator::Id(id)).await.ok()?.text().await.ok()
}

/// Waits until the element `id` shows text containing `wanted`.
async fn until_text(browser: &Client, id: &str, wanted: &str) {
    wait_for(&format!("#{id} to show {wanted:?}"), DEADLINE, || async {
        text_of(browser, id)
            .await
            .filter(|text| text.contains(wanted))
            .map(|_| ())
    })
    .await;
}

/// Clicks the element with this id once it is there.
async fn click(browser: &Client, id: &str) {
    let css = format!("#{id}");
    wait_for(id, DEADLINE, || async {
        present(browser, &css).await.then_some(())
    })
    .await;
    browser
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn present(browser: &Client, css: &str) -> bool {
    browser.find(Locator::Css(css)).await.is_ok()
}

#[tokio::test]
async fn a_user_sees_tasks_arrive_and_leave_in_the_web_tasklist() {
    let dir = std::env::temp_dir().join(format!("taskpool-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pool = taskpool::open_database(&dir.join("taskpool.sqlite"))
        .await
        .unwrap();
    let config = DemoConfig {
        seed: Some(11),
        // Every approval goes to the approvers, so the picked approver sees each new request.
        manager_threshold: i64::MAX,
        ..DemoConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (trigger, shutdown) = taskpool_service::shutdown::channel();
    // Actions go to a demo engine in this process (its own rules decide).
    let engine = Demo::<SqliteStore>::prepare(pool.clone(), config.clone())
        .await
        .unwrap();
    let route = taskpool::actions::route(
        pool.clone(),
        DemoActions::new(engine),
        Retention::default(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let options = Options {
        sign_in: SignIn::demo_users(&config.users),
        actions: Some(route),
        ..Options::default()
    };
    let node = taskpool::start(pool.clone(), options, listener, shutdown)
        .await
        .expect("the single node starts");
    let mut demo = Demo::<SqliteStore>::prepare(pool.clone(), config)
        .await
        .unwrap();
    for _ in 0..5 {
        demo.submit_request().await.unwrap();
    }

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("http://{address}/")).await.unwrap();

    // Pick a user: piggy, an approver.
    wait_for("the user picker", DEADLINE, || async {
        present(&browser, "#user option[value='piggy']")
            .await
            .then_some(())
    })
    .await;
    browser
        .find(Locator::Css("#user option[value='piggy']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "tasks-title", "piggy's tasks").await;
    until_text(&browser, "connection", "Live").await;
    until_text(&browser, "count", "5 tasks").await;
    let notice = text_of(&browser, "dev-notice").await.unwrap();
    assert!(notice.contains("Development sign-in"), "{notice}");

    // A new request: its task appears, marked new.
    let (_, arriving) = demo.submit_request().await.unwrap();
    let selector = format!("#tasks li[data-id='{arriving}']:not(.is-gone)");
    wait_for("the new task to appear", DEADLINE, || async {
        let item = browser.find(Locator::Css(&selector)).await.ok()?;
        item.text()
            .await
            .ok()
            .filter(|t| t.to_lowercase().contains("new"))
            .map(|_| ())
    })
    .await;
    until_text(&browser, "count", "6 tasks").await;

    // The demo completes it: ordering goes to purchasing, so it leaves piggy's list.
    demo.complete_task(&arriving, "piggy")
        .await
        .unwrap()
        .expect("completed");
    wait_for("the completed task to disappear", DEADLINE, || async {
        (!present(&browser, &selector).await).then_some(())
    })
    .await;
    until_text(&browser, "count", "5 tasks").await;

    // A search that matches nothing, through the API's filter; clearing it brings them back.
    browser
        .find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys("no such request")
        .await
        .unwrap();
    until_text(&browser, "count", "0 tasks").await;
    assert!(
        browser
            .find(Locator::Id("empty"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    browser
        .find(Locator::Css("#filters button[type='reset']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "count", "5 tasks").await;

    // A task's details, with its request (the data entry).
    let (_, shown) = demo.submit_request().await.unwrap();
    let selector = format!("#tasks li[data-id='{shown}']:not(.is-gone)");
    wait_for("another task to appear", DEADLINE, || async {
        present(&browser, &selector).await.then_some(())
    })
    .await;
    browser
        .find(Locator::Css(&selector))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "details-body", "Data entry").await;
    until_text(&browser, "details-body", "Request submitted").await;

    let screenshot = browser.screenshot().await.unwrap();
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tasklist.png");
    std::fs::write(&path, &screenshot).unwrap();

    // Piggy claims the task, then rejects the request (an approval offers her the choice): it
    // leaves her list, and the demo returned the request for revision.
    click(&browser, "action-claim").await;
    until_text(&browser, "action-status", "Claimed.").await;
    until_text(&browser, "details-body", "piggy").await;
    // The view allows a deferral; the demo's own rules refuse it, and the page says why.
    browser
        .execute(
            "document.getElementById('defer-value').value = '2031-01-02';",
            vec![],
        )
        .await
        .unwrap();
    click(&browser, "action-defer").await;
    until_text(&browser, "action-status", "keeps no follow-up dates").await;
    click(&browser, "action-complete-reject").await;
    until_text(&browser, "action-status", "Completed.").await;
    wait_for("the completed task to leave the list", DEADLINE, || async {
        (!present(&browser, &selector).await).then_some(())
    })
    .await;
    let request_state: String = sqlx::query_scalar(
        "SELECT r.state FROM demo_requests r JOIN demo_tasks t ON t.request_id = r.id \
         WHERE t.id = $1",
    )
    .bind(&shown)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(request_state, "returned for revision");
    until_text(&browser, "count", "5 tasks").await;

    // An engine's task whose id is "actions" (the actions panel's name) and whose name is
    // markup: it is listed as text, and selecting it shows its details and actions.
    let markup = "<img src=x><b>Check</b>";
    let mut task = new_task(markup);
    task.candidate_groups = ["approvers".to_string()].into();
    let mut tx = pool.begin().await.unwrap();
    let mut collector = Collector::new();
    let created = EngineEvent::TaskCreated {
        task_id: "actions".into(),
        task,
    };
    collector.record(created).unwrap();
    collector.flush::<SqliteStore>(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let hostile = "#tasks li[data-id='actions']:not(.is-gone)";
    wait_for("the task called actions to appear", DEADLINE, || async {
        let item = browser.find(Locator::Css(hostile)).await.ok()?;
        item.text()
            .await
            .ok()
            .filter(|t| t.contains(markup))
            .map(|_| ())
    })
    .await;
    until_text(&browser, "count", "6 tasks").await;
    browser
        .find(Locator::Css(hostile))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "details-title", markup).await;
    wait_for("the actions panel to offer a claim", DEADLINE, || async {
        present(&browser, "#details #task-actions #action-claim")
            .await
            .then_some(())
    })
    .await;
    assert!(
        !present(&browser, "#tasks #action-claim").await,
        "the actions stay in their panel, not in the list item"
    );

    // The browser itself logs every answer >= 400 as an error; the refused deferral above was
    // one on purpose. Anything else counts.
    let errors: Vec<String> = page_errors(&browser)
        .await
        .into_iter()
        .filter(|e| !(e.contains("/defer?wait=") && e.contains("409")))
        .collect();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    browser.close().await.unwrap();
    trigger.trigger();
    node.stopped().await;
    let _ = std::fs::remove_dir_all(&dir);
}
