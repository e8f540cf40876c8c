//! The configuration's loading and rules.
use super::*;

const MINIMAL: &str = r#"
    [mongodb]
    uri = "mongodb://localhost"
    [kafka]
    bootstrap_servers = "localhost:9092"
    [identity]
    hs256_secret = "0123456789abcdef0123456789abcdef"
"#;

#[test]
fn the_example_configuration_loads() {
    let config =
        Config::from_sources(include_str!("../../tasklist.example.toml"), Vec::new()).unwrap();
    assert_eq!(config.identity.leeway_secs, 30);
}

#[test]
fn a_minimal_configuration_gets_defaults() {
    let config = Config::from_sources(MINIMAL, Vec::new()).unwrap();
    assert_eq!(config.mongodb.database, "taskpool");
    assert_eq!(config.identity.user_claim, "sub");
    assert!(!config.identity.trusted_headers);
}

#[test]
fn serving_needs_an_identity_source_the_offline_commands_do_not_and_weak_secrets_are_refused() {
    let without = MINIMAL.replace("hs256_secret = \"0123456789abcdef0123456789abcdef\"", "");
    let offline = Config::from_sources(&without, Vec::new()).unwrap();
    let refusal = offline.check_serving().unwrap_err().to_string();
    assert!(refusal.contains("identity"), "{refusal}");
    Config::from_sources(MINIMAL, Vec::new())
        .unwrap()
        .check_serving()
        .unwrap();
    let weak = MINIMAL.replace("0123456789abcdef0123456789abcdef", "short");
    assert!(Config::from_sources(&weak, Vec::new()).is_err());
}

#[test]
fn development_sign_in_replaces_identity_and_is_never_combined_with_it() {
    let without_identity = MINIMAL
        .replace("[identity]", "")
        .replace("hs256_secret = \"0123456789abcdef0123456789abcdef\"", "");
    let users = env(&[("DEV_SIGN_IN__USERS", "kermit:approvers+managers, rowlf")]);
    let config = Config::from_sources(&without_identity, users.clone()).unwrap();
    let users_read =
        taskpool_tasklist::identity::dev::users_from(&config.dev_sign_in.unwrap().users);
    assert_eq!(users_read[0].name, "kermit");
    assert_eq!(users_read[0].groups, ["approvers", "managers"]);
    assert!(users_read[1].groups.is_empty());
    assert!(
        Config::from_sources(MINIMAL, users).is_err(),
        "both configured"
    );
}

/// Settings as the environment variables that set them.
fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().copied().map(Config::env_var).collect()
}

#[test]
fn the_environment_alone_configures_numeric_names_digit_secrets_and_overrides() {
    let config = Config::from_sources(
        "",
        env(&[
            ("MONGODB__URI", "mongodb://m:27017"),
            ("MONGODB__WRITE_CONCERN", "2"),
            ("KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092"),
            ("KAFKA__GROUP_ID", "4711"),
            ("KAFKA__CONSUMER__FETCH_MAX_BYTES", "10"),
            ("KAFKA__SECURITY__PROTOCOL", "SASL_SSL"),
            ("KAFKA__SECURITY__SASL_MECHANISM", "SCRAM-SHA-256"),
            ("KAFKA__SECURITY__SASL_USERNAME", "007"),
            ("KAFKA__SECURITY__SASL_PASSWORD", "12345678"),
            ("IDENTITY__HS256_SECRET", "01234567890123456789012345678901"),
        ]),
    )
    .unwrap();
    assert_eq!(config.kafka.bootstrap_servers, "k1:9092,k2:9092");
    assert_eq!(config.kafka.group_id, "4711");
    assert_eq!(config.mongodb.write_concern, WriteConcern::Nodes(2));
    assert_eq!(config.kafka.security.sasl_username.as_deref(), Some("007"));
    let client = crate::kafka::projection::consumer_config(&config.kafka);
    assert_eq!(client.get("fetch.max.bytes"), Some("10"));
    assert_eq!(client.get("group.id"), Some("4711"));
    assert_eq!(client.get("sasl.password"), Some("12345678"));
    let secret = config.identity.hs256_secret.as_ref().unwrap();
    assert_eq!(secret.expose_secret(), "01234567890123456789012345678901");
    let debug = format!("{config:?}");
    assert!(!debug.contains("12345678"), "{debug}");
}

#[test]
fn cors_origins_must_be_listed_origins() {
    for bad in ["*", "tasks.example.com", "https://tasks.example.com/app"] {
        let error =
            Config::from_sources(MINIMAL, env(&[("HTTP__CORS_ALLOWED_ORIGINS", bad)])).unwrap_err();
        assert!(
            error.to_string().contains("cors_allowed_origins"),
            "{bad}: {error}"
        );
    }
    let config = Config::from_sources(
        MINIMAL,
        env(&[(
            "HTTP__CORS_ALLOWED_ORIGINS",
            "https://tasks.example.com, http://localhost:3000",
        )]),
    )
    .unwrap();
    assert_eq!(config.http.cors_allowed_origins.len(), 2);
}

#[test]
fn unknown_keys_are_refused() {
    let error = Config::from_sources(
        MINIMAL,
        vec![("TASKPOOL_TASKLIST__STREAM__BUFFR".into(), "3".into())],
    )
    .unwrap_err();
    assert!(error.to_string().contains("buffr"), "{error}");
}

#[test]
fn a_consumer_override_storing_offsets_before_they_are_applied_is_refused() {
    let key = "KAFKA__CONSUMER__ENABLE_AUTO_OFFSET_STORE";
    let error = Config::from_sources(MINIMAL, env(&[(key, "true")])).unwrap_err();
    let named = "kafka.consumer.enable.auto.offset.store";
    assert!(error.to_string().contains(named), "{error}");
    assert!(Config::from_sources(MINIMAL, env(&[(key, "false")])).is_ok());
}

#[test]
fn groups_that_may_hand_on_claimed_tasks_come_from_the_file_or_the_environment() {
    let config = Config::from_sources(MINIMAL, Vec::new()).unwrap();
    assert!(config.actions.hand_over_groups.is_empty());
    let env = vec![Config::env_var((
        "ACTIONS__HAND_OVER_GROUPS",
        "leads, admins",
    ))];
    let config = Config::from_sources(MINIMAL, env).unwrap();
    assert_eq!(config.actions.hand_over_groups, ["leads", "admins"]);
}
