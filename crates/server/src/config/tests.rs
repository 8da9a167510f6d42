//! The configuration as an operator meets it: files, environment variables, and the
//! errors both give.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn log_format_is_text_by_default_json_on_request_and_nothing_else() {
    assert_eq!(Config::load(None, env(&[])).unwrap().log_format, LogFormat::Text);
    let json = Config::load(None, env(&[("ZERODROP_LOG_FORMAT", "json")])).unwrap();
    assert_eq!(json.log_format, LogFormat::Json);
    let wrong = Config::load(None, env(&[("ZERODROP_LOG_FORMAT", "yaml")])).unwrap_err().to_string();
    assert!(wrong.contains("ZERODROP_LOG_FORMAT") && wrong.contains("`text` or `json`"), "{wrong}");
    assert!(!wrong.contains("yaml"), "the variable is named, its value never shown: {wrong}");
}

#[test]
fn environment_overrides_file_values_at_any_depth() {
    let dir = std::env::temp_dir().join(format!("zd-config-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("zerodrop.toml");
    std::fs::write(&file, "listen = \"0.0.0.0:1\"\n[orders]\nttl_secs = 60\n").unwrap();
    let config = Config::load(
        Some(&file),
        env(&[
            ("ZERODROP_ORDERS__TTL_SECS", "120"),
            ("ZERODROP_DATABASE_URL", "postgres://zd:hunter2@db.example:5432/zd"),
            ("ZERODROP_ORDERS__QUERY_SCHEDULE_SECS", "[5, 10]"),
            ("ZERODROP_API__MERCHANT_API_KEYS", "[\"k1-a-merchant-key-of-32-bytes-or-more\"]"),
            ("ZERODROP_PROVIDERS__0__NAME", "sandbox"),
            ("ZERODROP_PROVIDERS__0__KIND", "alipay"),
            ("ZERODROP_PROVIDERS__0__APP_ID", "2021"),
            ("ZERODROP_PROVIDERS__0__SELLER_ID", "2088"),
            ("ZERODROP_PROVIDERS__0__GATEWAY_URL", "http://127.0.0.1:9/gateway.do"),
            ("ZERODROP_PROVIDERS__0__APP_PRIVATE_KEY", "very-secret-key"),
            ("HOME", "/ignored"),
            ("ZERODROP_LOG", "debug"),
            ("ZERODROP_CONFIG", "/etc/zerodrop.toml"),
            ("ZERODROP_TEST_PG", "postgres://x"),
        ]),
    )
    .unwrap();
    assert_eq!(config.listen, "0.0.0.0:1");
    assert_eq!(config.orders.ttl_secs, 120);
    assert_eq!(config.orders.query_schedule_secs, vec![5, 10]);
    assert_eq!(config.providers[0].app_id, "2021", "a numeric-looking id stays as written");
    let printed = config.redacted_toml();
    assert!(!printed.contains("hunter2"), "the database password is never printed: {printed}");
    assert!(!printed.contains("very-secret-key") && !printed.contains("k1-a-merchant"), "{printed}");
    assert!(printed.contains("[redacted]"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn files_written_before_the_cadence_still_load_and_never_ask_less() {
    let dir = std::env::temp_dir().join(format!("zd-config-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("zerodrop.toml");
    let old = "[orders]\nttl_secs = 900\nquery_schedule_secs = [30, 60, 120, 300, 600]\nlate_sweep_secs = 600\n";
    std::fs::write(&file, old).unwrap();
    let config = Config::load(Some(&file), env(&[])).unwrap();
    assert_eq!(config.orders.query_schedule_secs, [30, 60, 120, 300, 600]);
    assert_eq!(config.orders.query_cadence, OrderConfig::default().query_cadence, "the cadence still runs");
    assert_eq!(config.orders.late_sweep_points_secs(), [600, 3_600, 21_600, 86_400, 259_200]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_cadence_and_sweeps_are_set_from_a_file_or_the_environment() {
    let cadence = "[{ every_secs = 10, until_secs = 60 }, { every_secs = 45 }]";
    let config = Config::load(
        None,
        env(&[
            ("ZERODROP_ORDERS__QUERY_CADENCE", cadence),
            ("ZERODROP_ORDERS__LATE_SWEEP_SCHEDULE_SECS", "[60, 7200]"),
        ]),
    )
    .unwrap();
    let steps = &config.orders.query_cadence;
    assert_eq!(
        steps,
        &[QueryStep { every_secs: 10, until_secs: Some(60) }, QueryStep { every_secs: 45, until_secs: None }]
    );
    assert_eq!(config.orders.late_sweep_points_secs(), [60, 7_200]);
    // The effective configuration, written out and read back, is the same (a child
    // `serve` reads what the stack writes).
    let text = toml::to_string_pretty(&config).unwrap();
    let again: Config = toml::from_str(&text).unwrap();
    assert_eq!(again.orders.query_cadence, config.orders.query_cadence, "{text}");
    assert_eq!(again.orders.late_sweep_points_secs(), [60, 7_200], "{text}");
    assert!(!text.contains("late_sweep_secs"), "the replaced key is not written: {text}");
}

#[test]
fn a_cadence_or_sweep_schedule_that_cannot_work_is_refused_with_the_key_named() {
    let refused = |key: &str, value: &str| Config::load(None, env(&[(key, value)])).unwrap_err().to_string();
    let cadence = "ZERODROP_ORDERS__QUERY_CADENCE";
    let err = refused(cadence, "[{ every_secs = 0 }]");
    assert!(err.contains("query_cadence[0].every_secs"), "{err}");
    let err = refused(cadence, "[{ every_secs = 10 }, { every_secs = 20, until_secs = 60 }]");
    assert!(err.contains("must be the last step"), "{err}");
    let err = refused(cadence, "[{ every_secs = 10, until_secs = 60 }, { every_secs = 20, until_secs = 30 }]");
    assert!(err.contains("query_cadence[1].until_secs"), "{err}");
    let hour_at_every_second = env(&[(cadence, "[{ every_secs = 1 }]"), ("ZERODROP_ORDERS__TTL_SECS", "3600")]);
    let err = Config::load(None, hour_at_every_second).unwrap_err().to_string();
    assert!(err.contains("more than 1000 times"), "{err}");
    let err = refused(cadence, "[{ every_secs = 30, until = 60 }]");
    assert!(err.contains("until"), "{err}");
    let err = refused("ZERODROP_ORDERS__LATE_SWEEP_SCHEDULE_SECS", "[]");
    assert!(err.contains("late_sweep_schedule_secs"), "no sweep at all is refused: {err}");
    let err = refused("ZERODROP_ORDERS__LATE_SWEEP_SCHEDULE_SECS", "[3600, 0]");
    assert!(err.contains("late_sweep_schedule_secs"), "{err}");
    let err = refused("ZERODROP_ORDERS__LATE_SWEEP_SECS", "-5");
    assert!(err.contains("late_sweep_schedule_secs"), "the old key is checked as a point of the new: {err}");
}

#[test]
fn bad_configuration_is_refused_with_the_key_named() {
    let err = Config::load(None, env(&[("ZERODROP_ORDERS__TTL_SECS", "1")])).unwrap_err().to_string();
    assert!(err.contains("ttl_secs"), "{err}");
    let err = Config::load(None, env(&[("ZERODROP_SURPRISE", "1")])).unwrap_err().to_string();
    assert!(err.contains("surprise"), "{err}");
}

#[test]
fn configuration_errors_never_quote_the_text_they_refuse() {
    let dir = std::env::temp_dir().join(format!("zd-cfg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    // A syntax error on the line that holds a private key.
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\n[[providers]]\napp_private_key = \"MIIEsecretkey\n").unwrap();
    let error = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
    assert!(!error.contains("MIIEsecretkey"), "{error}");
    assert!(error.contains("line 3"), "says where: {error}");
    // A secret from the environment that does not fit its key's type.
    let error =
        Config::load(None, env(&[("ZERODROP_API__MERCHANT_API_KEYS", "zd_live_topsecret")])).unwrap_err().to_string();
    assert!(!error.contains("topsecret"), "{error}");
}

/// What a test key looks like when it is long enough.
const LONG_KEY: &str = "a-merchant-key-of-at-least-32-bytes";

#[test]
fn variables_are_named_in_errors_about_their_values_and_the_values_never_shown() {
    let refused = |pairs: &[(&str, &str)]| Config::load(None, env(pairs)).unwrap_err().to_string();
    let error = refused(&[("ZERODROP_API__MERCHANT_API_KEYS", "zd_live_topsecret")]);
    assert!(error.contains("ZERODROP_API__MERCHANT_API_KEYS"), "{error}");
    assert!(!error.contains("topsecret"), "{error}");
    let error = refused(&[("ZERODROP_ORDERS__TTL_SECS", "\"s3cr3t-ttl\"")]);
    assert!(error.contains("ZERODROP_ORDERS__TTL_SECS") && !error.contains("s3cr3t"), "{error}");
    let error = refused(&[("ZERODROP_JOBS__ENABLED", "987654321")]);
    assert!(error.contains("ZERODROP_JOBS__ENABLED") && !error.contains("987654321"), "{error}");
    // Inside an array of tables: the variable with its index.
    let error = refused(&[
        ("ZERODROP_DELIVERY_ENDPOINTS__0__NAME", "game"),
        ("ZERODROP_DELIVERY_ENDPOINTS__0__URL", "https://game.example/deliver"),
        ("ZERODROP_DELIVERY_ENDPOINTS__0__SECRET", LONG_KEY),
        ("ZERODROP_DELIVERY_ENDPOINTS__0__TIMEOUT_MS", "\"topsecret-ms\""),
    ]);
    assert!(error.contains("ZERODROP_DELIVERY_ENDPOINTS__0__TIMEOUT_MS"), "{error}");
    assert!(!error.contains("topsecret") && !error.contains(LONG_KEY), "{error}");
    let error = refused(&[("ZERODROP_SURPRISE", "hunter2")]);
    assert!(error.contains("ZERODROP_SURPRISE") && !error.contains("hunter2"), "{error}");
}

#[test]
fn merchant_keys_shorter_than_32_bytes_are_refused_with_the_key_named() {
    let refused = |pairs: &[(&str, &str)]| Config::load(None, env(pairs)).unwrap_err().to_string();
    let short = "short-key-of-31-bytes-exactly-x";
    assert_eq!(short.len(), 31);
    let keys = format!("[\"{LONG_KEY}\", \"{short}\"]");
    let error = refused(&[("ZERODROP_API__MERCHANT_API_KEYS", &keys)]);
    assert!(error.contains("api.merchant_api_keys[1]") && error.contains("32 bytes"), "{error}");
    assert!(!error.contains(short), "{error}");
    let error = refused(&[("ZERODROP_STATUS_PAGES__SECRET", short)]);
    assert!(error.contains("status_pages.secret"), "{error}");
    let endpoint = |url: &str, secret: &str| {
        Config::load(
            None,
            env(&[
                ("ZERODROP_DELIVERY_ENDPOINTS__0__NAME", "game"),
                ("ZERODROP_DELIVERY_ENDPOINTS__0__URL", url),
                ("ZERODROP_DELIVERY_ENDPOINTS__0__SECRET", secret),
            ]),
        )
    };
    let error = endpoint("https://game.example/deliver", short).unwrap_err().to_string();
    assert!(error.contains("delivery_endpoints[0].secret"), "{error}");
    assert!(endpoint("https://game.example/deliver", LONG_KEY).is_ok());
    let keys = format!("[\"{LONG_KEY}\"]");
    assert!(Config::load(None, env(&[("ZERODROP_API__MERCHANT_API_KEYS", &keys)])).is_ok());
}

#[test]
fn plain_http_gateways_and_endpoints_are_refused_unless_on_loopback() {
    let provider = |gateway: &str| {
        Config::load(
            None,
            env(&[
                ("ZERODROP_PROVIDERS__0__NAME", "alipay"),
                ("ZERODROP_PROVIDERS__0__KIND", "alipay"),
                ("ZERODROP_PROVIDERS__0__APP_ID", "2021"),
                ("ZERODROP_PROVIDERS__0__SELLER_ID", "2088"),
                ("ZERODROP_PROVIDERS__0__GATEWAY_URL", gateway),
            ]),
        )
    };
    let error = provider("http://openapi.alipay.com/gateway.do").unwrap_err().to_string();
    assert!(error.contains("providers[0].gateway_url") && error.contains("https://"), "{error}");
    assert!(provider("https://openapi.alipay.com/gateway.do").is_ok());
    assert!(provider("http://127.0.0.1:9090/gateway.do").is_ok(), "the sandbox on this machine");
    let endpoint = |url: &str| {
        Config::load(
            None,
            env(&[
                ("ZERODROP_DELIVERY_ENDPOINTS__0__NAME", "game"),
                ("ZERODROP_DELIVERY_ENDPOINTS__0__URL", url),
                ("ZERODROP_DELIVERY_ENDPOINTS__0__SECRET", LONG_KEY),
            ]),
        )
    };
    let error = endpoint("http://game.example/deliver").unwrap_err().to_string();
    assert!(error.contains("delivery_endpoints[0].url") && error.contains("loopback"), "{error}");
    assert!(endpoint("http://localhost:7000/deliver").is_ok());
    assert!(endpoint("http://[::1]:7000/deliver").is_ok());
}

#[test]
fn the_message_webhook_loads_from_the_environment_and_its_secret_is_never_printed() {
    let config = Config::load(
        None,
        env(&[
            ("ZERODROP_MESSAGES__WEBHOOK_URL", "https://hooks.example/m?token=url-secret-token"),
            ("ZERODROP_MESSAGES__WEBHOOK_SECRET", "message-webhook-secret-0123456789abcdef"),
        ]),
    )
    .unwrap();
    assert!(config.messages.webhook().is_some());
    let printed = config.redacted_toml();
    assert!(!printed.contains("message-webhook-secret"), "{printed}");
    assert!(config.secrets().iter().any(|s| s == "message-webhook-secret-0123456789abcdef"));
    let half = Config::load(None, env(&[("ZERODROP_MESSAGES__WEBHOOK_URL", "https://hooks.example/m")]));
    assert!(half.is_err(), "a webhook without its secret is refused");
}
