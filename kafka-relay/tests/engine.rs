//! End to end with the real, unmodified engine (Operaton): processes started through its REST
//! API reach the tasklist through the capture and the relay; actions taken in the tasklist are
//! carried out through its REST API by the relay; what each person sees equals what the
//! engine's own REST API says they can see, field by field, in `GET /api/tasks` and in their
//! stream.

mod support;

use std::time::Duration;

use serde_json::json;
use support::KafkaReader;
use support::pipeline::Pipeline;
use taskpool_testkit::http::{StreamClient, Tasklist, post_json};
use taskpool_testkit::operaton::{Flavour, People};
use taskpool_testkit::wait_for;

const DEADLINE: Duration = Duration::from_secs(90);

/// Reads a stream until its tasks equal the tasklist's, or panics at the deadline.
async fn stream_until_equal(
    stream: &mut StreamClient,
    view: &mut Tasklist,
    expected: &std::collections::BTreeMap<String, serde_json::Value>,
    who: &str,
) {
    let settled = tokio::time::timeout(DEADLINE, async {
        loop {
            if view.tasks == *expected {
                return;
            }
            let Some(event) = stream.next().await else {
                panic!("{who}'s stream ended");
            };
            view.apply(&event);
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{who}'s stream never equalled the tasklist: {:?} vs {:?}",
        view.ids(),
        expected.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasklist_shows_what_operaton_shows_and_its_actions_reach_it() {
    the_tasklist_shows_what_the_engine_shows_and_its_actions_reach_the_engine(Flavour::Operaton)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasklist_shows_what_camunda_7_shows_and_its_actions_reach_it() {
    the_tasklist_shows_what_the_engine_shows_and_its_actions_reach_the_engine(Flavour::Camunda)
        .await
}

async fn the_tasklist_shows_what_the_engine_shows_and_its_actions_reach_the_engine(
    flavour: Flavour,
) {
    let people = People::unique();
    let (first, second) = (
        format!("{}a", people.approvers),
        format!("{}b", people.approvers),
    );
    let approvers = [people.approvers.as_str()];
    let users: Vec<(&str, &[&str])> = vec![
        (first.as_str(), &approvers),
        (second.as_str(), &approvers),
        (people.buyer.as_str(), &[]),
        (people.reviewer.as_str(), &[]),
    ];
    let pipeline = Pipeline::start(flavour, &users).await;
    let engine = &pipeline.engine;
    let mut streams = vec![];
    for (user, _) in &users {
        let stream = StreamClient::open(
            &pipeline.address,
            "/api/tasks/stream",
            pipeline.token(user),
            None,
        )
        .await;
        assert_eq!(stream.status, 200);
        streams.push((user.to_string(), stream, Tasklist::default()));
    }

    let kept = engine.start_purchase("kept", &people, false).await;
    let cancelled = engine.start_purchase("cancelled", &people, false).await;
    let approve = engine.tasks_of(&kept).await[0].1.clone();
    let list = pipeline.wait_until_equal(&first, DEADLINE).await;
    assert_eq!(
        list.len(),
        2,
        "both approvals offered to the approvers: {list:?}"
    );

    // Claimed in the tasklist: the engine shows it claimed; another approver's claim is refused
    // with the engine's reason.
    let claimed = pipeline.act(&first, &approve, "claim", None, None).await;
    if claimed.status != 200 {
        panic!(
            "{}",
            pipeline.why_not_applied(&claimed, &approve, &first).await
        );
    }
    let task = engine
        .call("GET", &format!("/task/{approve}"), None)
        .await
        .json();
    assert_eq!(task["assignee"], first.as_str(), "{task}");
    let refused = pipeline.act(&second, &approve, "claim", None, None).await;
    assert_eq!(
        refused.status, 409,
        "the tasklist's own rules: {}",
        refused.body
    );

    // Someone claims the other approval in the engine itself while the relay is paused
    // (SIGSTOP): taskpool still offers the task, so a claim there reaches the engine, which
    // refuses it with its own reason.
    let other = engine.tasks_of(&cancelled).await[0].1.clone();
    pipeline.signal_relay("STOP").await;
    let claim = json!({"userId": second.as_str()});
    let direct = engine
        .call("POST", &format!("/task/{other}/claim"), Some(claim))
        .await;
    assert_eq!(direct.status, 204, "{}", direct.body);
    let (address, token) = (pipeline.address.clone(), pipeline.token(&first).to_string());
    let path = format!("/api/tasks/{other}/claim?wait=30s");
    let late = tokio::spawn(async move { post_json(&address, &path, Some(&token), None).await });
    let mut commands = KafkaReader::new(
        &pipeline.bootstrap,
        std::slice::from_ref(&pipeline.topics.commands),
    )
    .await;
    commands
        .read_until("the late claim on the command topic", DEADLINE, |r| {
            !r.is_empty()
        })
        .await;
    pipeline.signal_relay("CONT").await;
    let refused = late.await.unwrap();
    assert_eq!(refused.status, 409, "{}", refused.body);
    let reason = refused.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("is already claimed by someone else"),
        "the engine's reason: {reason}"
    );

    // Deferred and completed with a variable: the process moves on to the purchase, which
    // reaches the buyer (its assignee) and the reviewer (its candidate).
    let deferred = pipeline
        .act(
            &first,
            &approve,
            "defer",
            Some(json!({"followUpDate": "2030-03-17T17:46:40Z"})),
            None,
        )
        .await;
    assert_eq!(deferred.status, 200, "{}", deferred.body);
    let task = engine
        .call("GET", &format!("/task/{approve}"), None)
        .await
        .json();
    assert_eq!(task["followUp"], "2030-03-17T17:46:40.000+0000", "{task}");
    pipeline.wait_until_equal(&first, DEADLINE).await;
    assert_eq!(
        engine.times_claimed(&approve, &first).await,
        1,
        "claimed once"
    );
    let completed = pipeline
        .act(
            &first,
            &approve,
            "complete",
            Some(json!({"approved": true})),
            None,
        )
        .await;
    assert_eq!(completed.status, 200, "{}", completed.body);
    let next = wait_for("the purchase task", DEADLINE, || async {
        let tasks = engine.tasks_of(&kept).await;
        tasks
            .iter()
            .find(|(key, _)| key == "buy")
            .map(|(_, id)| id.clone())
    })
    .await;
    let approved = engine
        .call(
            "GET",
            &format!("/history/variable-instance?processInstanceId={kept}&variableName=approved"),
            None,
        )
        .await
        .json();
    assert_eq!(approved[0]["value"], true, "{approved}");
    assert!(
        pipeline
            .wait_until_equal(&people.buyer, DEADLINE)
            .await
            .contains_key(&next)
    );
    assert!(
        pipeline
            .wait_until_equal(&people.reviewer, DEADLINE)
            .await
            .contains_key(&next)
    );

    // A cancelled process's task leaves every list.
    engine.cancel(&cancelled).await;
    assert!(pipeline.wait_until_equal(&first, DEADLINE).await.is_empty());

    for (user, stream, view) in &mut streams {
        let expected = pipeline.wait_until_equal(user, DEADLINE).await;
        stream_until_equal(stream, view, &expected, user).await;
    }
    drop(streams);
    pipeline.stop().await;
}

/// The relay, which reads the capture and carries out the actions, killed with SIGKILL at
/// random moments while approvers claim and complete purchases in the tasklist: nothing is
/// lost (every list ends equal to the engine's) and nothing is applied twice (the engine's
/// operation log shows each claim once, each approval moved its process on once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_at_random_loses_nothing_and_applies_nothing_twice() {
    const PURCHASES: usize = 6;
    const KILLS: usize = 4;
    let people = People::unique();
    let approver = format!("{}a", people.approvers);
    let groups = [people.approvers.as_str()];
    let users: Vec<(&str, &[&str])> = vec![
        (approver.as_str(), &groups),
        (people.buyer.as_str(), &[]),
        (people.reviewer.as_str(), &[]),
    ];
    let pipeline = Pipeline::start(Flavour::Operaton, &users).await;
    let engine = &pipeline.engine;
    let killer = pipeline.relay_killer();
    let kills = tokio::spawn(async move {
        for _ in 0..KILLS {
            let pause = support::random_between(1500, 5000);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            killer.kill_and_restart().await;
        }
    });

    let mut approvals = vec![];
    for i in 0..PURCHASES {
        let instance = engine
            .start_purchase(&format!("killed-{i}"), &people, false)
            .await;
        let approve = engine.tasks_of(&instance).await[0].1.clone();
        approvals.push((instance, approve));
    }
    for (i, (instance, approve)) in approvals.iter().enumerate() {
        // Each action is repeated with its idempotency key until the engine shows it: a
        // request whose answer was lost in a kill is one command, applied once.
        let claim_key = format!("claim-{i}");
        wait_for("the claim in the engine", DEADLINE * 2, || async {
            let task = engine
                .call("GET", &format!("/task/{approve}"), None)
                .await
                .json();
            if task["assignee"] == approver.as_str() {
                return Some(());
            }
            pipeline
                .act(&approver, approve, "claim", None, Some(&claim_key))
                .await;
            None
        })
        .await;
        let complete_key = format!("complete-{i}");
        wait_for("the approval in the engine", DEADLINE * 2, || async {
            let tasks = engine.tasks_of(instance).await;
            if tasks.iter().any(|(key, _)| key == "buy") {
                return Some(());
            }
            let approved = Some(json!({"approved": true}));
            pipeline
                .act(
                    &approver,
                    approve,
                    "complete",
                    approved,
                    Some(&complete_key),
                )
                .await;
            None
        })
        .await;
    }
    kills.await.expect("the relay was killed and restarted");

    for (instance, approve) in &approvals {
        assert_eq!(
            engine.times_claimed(approve, &approver).await,
            1,
            "claimed once: {approve}"
        );
        let tasks = engine.tasks_of(instance).await;
        assert_eq!(
            tasks.len(),
            1,
            "one purchase task after one approval: {tasks:?}"
        );
    }
    for (user, _) in &users {
        pipeline.wait_until_equal(user, DEADLINE).await;
    }
    assert_eq!(pipeline.tasklist(&people.buyer).await.len(), PURCHASES);
    pipeline.stop().await;
}

/// A command found `pending` (the service stopped after the engine carried it out and before
/// recording that) is not sent again when the engine shows its effect; one that never reached
/// the engine is sent. Deterministic: the earlier attempt is the record plus a claim made
/// directly in the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_resumed_after_a_crash_is_sent_again_only_if_the_engine_lacks_it() {
    use taskpool_core::PgStore;
    use taskpool_engine_commands::CommandStore as _;
    use taskpool_engine_commands::consumer::Applier as _;
    use taskpool_engine_commands::rest::{EngineApi, EngineEndpoint, RestApplier};
    use taskpool_schemas::{OutcomeResult, Payload, TaskAction, TaskCommand, Timestamp};

    let engine = taskpool_testkit::operaton::Engine::ready().await;
    PgStore::migrate_all(&engine.pool).await.unwrap();
    let people = People::unique();
    let user = format!("{}a", people.approvers);
    engine.create_user(&user, &[&people.approvers]).await;
    let api = EngineApi::new(&EngineEndpoint {
        url: engine.rest_url.clone(),
        username: None,
        password: None,
        ca_location: None,
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let applier = RestApplier::new(
        engine.pool.clone(),
        api,
        Duration::ZERO,
        taskpool_engine_commands::Retention::default(),
    );
    let claim = |task: &str| TaskCommand {
        command_id: uuid::Uuid::new_v4(),
        action: TaskAction::Claim,
        task_id: task.to_string(),
        application: "purchases".into(),
        issued_by: user.clone(),
        issued_at: Timestamp::now(),
        task_version: None,
        assignee: None,
        follow_up_date: None,
        variables: Payload::new(),
    };
    let pending = "INSERT INTO taskpool_processed_commands (command_id, task_id, result) \
                   VALUES ($1, $2, 'pending')";

    // Carried out before the crash (the approval completed): applied, not sent again (the
    // engine would refuse a second completion: "Cannot find task").
    let instance = engine.start_purchase("resumed", &people, false).await;
    let carried_out = engine.tasks_of(&instance).await[0].1.clone();
    let mut command = claim(&carried_out);
    command.action = TaskAction::Complete;
    sqlx::query(pending)
        .bind(command.command_id.to_string())
        .bind(&carried_out)
        .execute(&engine.pool)
        .await
        .unwrap();
    let direct = engine
        .call(
            "POST",
            &format!("/task/{carried_out}/complete"),
            Some(json!({})),
        )
        .await;
    assert_eq!(direct.status, 204, "{}", direct.body);
    let outcome = applier.apply(&command).await.unwrap();
    assert_eq!(
        outcome.result,
        OutcomeResult::Applied,
        "{:?}",
        outcome.reason
    );

    // Never reached the engine before the crash: sent now.
    let instance = engine
        .start_purchase("resumed-unsent", &people, false)
        .await;
    let unsent = engine.tasks_of(&instance).await[0].1.clone();
    let command = claim(&unsent);
    sqlx::query(pending)
        .bind(command.command_id.to_string())
        .bind(&unsent)
        .execute(&engine.pool)
        .await
        .unwrap();
    let outcome = applier.apply(&command).await.unwrap();
    assert_eq!(outcome.result, OutcomeResult::Applied);
    assert_eq!(engine.times_claimed(&unsent, &user).await, 1);
    // And a redelivery of a decided command changes nothing.
    assert_eq!(
        applier.apply(&command).await.unwrap().result,
        OutcomeResult::Applied
    );
    assert_eq!(engine.times_claimed(&unsent, &user).await, 1);
}
