//! Secrets never printed. Known secret strings are fed through every error path the
//! binary can reach from its configuration (a TOML syntax error on a key's line, values
//! of the wrong type in the file and in variables, unknown keys, bad URLs, short keys,
//! bad private keys and card keys, a database URL a driver refuses, `config check` of a
//! valid file), and none of them may appear on stdout or stderr; the key or variable
//! must be named instead. Also checked: the `Display` and `Debug` of the errors and of
//! the configuration itself.

use std::path::Path;
use std::process::Output;
use zerodrop_server::Config;

/// Each secret is unique, so a leak names the path that leaked it.
const SECRETS: &[&str] = &[
    "SECRET-PRIVKEY-MIIEvQIBADANBgkqhkiG9w0B",
    "SECRET-APIKEY-7f3a9e1c",
    "SECRET-DBPASS-hunter2",
    "SECRET-URLPASS-swordfish",
    "SECRET-SHORT",
    "SECRET-ENDPOINT-0123456789abcdef0123456789",
    "982734598273459827",
    "SECRET-CARDKEY-not-base64-at-all",
    "SECRET-BADKEY-not-a-pem",
    "SECRET-LOGFMT",
    "SECRET-SURPRISE",
    "SECRET-FILEKEY-a1b2c3",
    "SECRET-SSLMODE-x9",
    "SECRET-STATUS-0123456789abcdef0123456789",
    "SECRET-MERCHANT-0123456789abcdef0123456789",
];

/// A configuration with every secret in place and nothing wrong.
fn valid_file(dir: &Path) -> String {
    format!(
        "database_url = \"sqlite://{}/zd.db\"\n\
         [api]\nmerchant_api_keys = [\"SECRET-MERCHANT-0123456789abcdef0123456789\"]\n\
         [status_pages]\nsecret = \"SECRET-STATUS-0123456789abcdef0123456789\"\n\
         [[delivery_endpoints]]\nname = \"game\"\nurl = \"https://game.example/deliver\"\n\
         secret = \"SECRET-ENDPOINT-0123456789abcdef0123456789\"\n",
        dir.display()
    )
}

struct Run {
    what: &'static str,
    file: Option<String>,
    env: Vec<(&'static str, String)>,
    args: Vec<String>,
    /// Must fail (the error path was reached), naming this.
    fails_naming: Option<&'static str>,
}

fn run(
    what: &'static str,
    file: Option<String>,
    env: &[(&'static str, &str)],
    fails_naming: Option<&'static str>,
) -> Run {
    Run {
        what,
        file,
        env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        args: vec!["config".into(), "check".into()],
        fails_naming,
    }
}

fn runs(dir: &Path) -> Vec<Run> {
    let valid = valid_file(dir);
    vec![
        run("a valid file: config check", Some(valid.clone()), &[], None),
        run(
            "a TOML syntax error on the private key's line",
            Some(format!("{valid}[[providers]]\napp_private_key = \"SECRET-PRIVKEY-MIIEvQIBADANBgkqhkiG9w0B\n")),
            &[],
            Some("line"),
        ),
        run(
            "a value of the wrong type in the file",
            Some("[api]\nmerchant_api_keys = \"SECRET-FILEKEY-a1b2c3\"\n".into()),
            &[],
            Some("api.merchant_api_keys"),
        ),
        run(
            "a variable of the wrong type",
            None,
            &[("ZERODROP_API__MERCHANT_API_KEYS", "SECRET-APIKEY-7f3a9e1c")],
            Some("ZERODROP_API__MERCHANT_API_KEYS"),
        ),
        run(
            "a number where a string goes",
            None,
            &[("ZERODROP_STATUS_PAGES__SECRET", "982734598273459827")],
            Some("ZERODROP_STATUS_PAGES__SECRET"),
        ),
        run("an unknown variant", None, &[("ZERODROP_LOG_FORMAT", "SECRET-LOGFMT")], Some("ZERODROP_LOG_FORMAT")),
        run("an unknown key", None, &[("ZERODROP_SURPRISE", "SECRET-SURPRISE")], Some("ZERODROP_SURPRISE")),
        run(
            "a short merchant key",
            None,
            &[("ZERODROP_API__MERCHANT_API_KEYS", "[\"SECRET-SHORT\"]")],
            Some("api.merchant_api_keys[0]"),
        ),
        run(
            "a plain-HTTP gateway with a password in it",
            None,
            &[
                ("ZERODROP_PROVIDERS__0__NAME", "alipay"),
                ("ZERODROP_PROVIDERS__0__KIND", "alipay"),
                ("ZERODROP_PROVIDERS__0__APP_ID", "2021"),
                ("ZERODROP_PROVIDERS__0__SELLER_ID", "2088"),
                ("ZERODROP_PROVIDERS__0__GATEWAY_URL", "http://zd:SECRET-URLPASS-swordfish@pay.example/gateway.do"),
            ],
            Some("providers[0].gateway_url"),
        ),
        run(
            "a private key that is not a key",
            None,
            &[
                ("ZERODROP_PROVIDERS__0__NAME", "alipay"),
                ("ZERODROP_PROVIDERS__0__KIND", "alipay"),
                ("ZERODROP_PROVIDERS__0__APP_ID", "2021"),
                ("ZERODROP_PROVIDERS__0__SELLER_ID", "2088"),
                ("ZERODROP_PROVIDERS__0__GATEWAY_URL", "https://zd:SECRET-URLPASS-swordfish@pay.example/gateway.do"),
                ("ZERODROP_PROVIDERS__0__APP_PRIVATE_KEY", "SECRET-BADKEY-not-a-pem"),
                // A public key is not a secret: `config check` shows it.
                ("ZERODROP_PROVIDERS__0__PROVIDER_PUBLIC_KEY", "not-a-public-key-either"),
            ],
            Some("app_private_key"),
        ),
        Run {
            args: vec!["admin".into(), "stock".into(), "--sku".into(), "card_50".into()],
            ..run(
                "a card key that is not 32 bytes of base64",
                Some(valid.clone()),
                &[("ZERODROP_CARD_KEYS__ENCRYPTION_KEY", "SECRET-CARDKEY-not-base64-at-all")],
                Some("card_keys.encryption_key"),
            )
        },
        Run {
            args: vec!["migrate".into()],
            ..run(
                "a database URL the driver refuses, with a password and a parameter it echoes",
                None,
                &[(
                    "ZERODROP_DATABASE_URL",
                    "postgres://zd:SECRET-DBPASS-hunter2@127.0.0.1:5432/zd?sslmode=SECRET-SSLMODE-x9",
                )],
                Some("ssl_mode"),
            )
        },
        Run {
            args: vec![
                "--database-url".into(),
                "postgres://zd:SECRET-DBPASS-hunter2@127.0.0.1:notaport/zd".into(),
                "migrate".into(),
            ],
            ..run("a database URL with a bad port, on the command line", None, &[], Some("port"))
        },
        run(
            "the database password in config check",
            None,
            &[("ZERODROP_DATABASE_URL", "postgres://zd:SECRET-DBPASS-hunter2@db.example/zd")],
            None,
        ),
    ]
}

fn leaks(text: &str) -> Vec<&'static str> {
    SECRETS.iter().copied().filter(|s| text.contains(s)).collect()
}

#[tokio::test]
async fn no_error_path_prints_a_secret() {
    let dir = std::env::temp_dir().join(format!("zd-secrets-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, case) in runs(&dir).into_iter().enumerate() {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_zerodrop"));
        command.env_clear().args(&case.args);
        if let Some(text) = &case.file {
            let path = dir.join(format!("case{i}.toml"));
            std::fs::write(&path, text).unwrap();
            command.env("ZERODROP_CONFIG", &path);
        }
        for (name, value) in &case.env {
            command.env(name, value);
        }
        let Output { status, stdout, stderr } = command.output().await.unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
        let what = case.what;
        assert!(leaks(&stdout).is_empty() && leaks(&stderr).is_empty(), "{what}: leaked\n{stdout}\n{stderr}");
        match case.fails_naming {
            Some(named) => {
                assert!(!status.success(), "{what}: the error path was not reached\n{stdout}\n{stderr}");
                assert!(stderr.contains(named), "{what}: the error must name {named}: {stderr}");
            }
            None => assert!(status.success(), "{what}: {stderr}"),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn errors_and_the_configuration_never_show_a_secret_in_display_or_debug() {
    let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    let failing = [
        env(&[("ZERODROP_API__MERCHANT_API_KEYS", "SECRET-APIKEY-7f3a9e1c")]),
        env(&[("ZERODROP_STATUS_PAGES__SECRET", "982734598273459827")]),
        env(&[("ZERODROP_API__MERCHANT_API_KEYS", "[\"SECRET-SHORT\"]")]),
        env(&[("ZERODROP_LOG_FORMAT", "SECRET-LOGFMT")]),
    ];
    for pairs in failing {
        let error = Config::load(None, pairs).unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(leaks(&shown).is_empty(), "{shown}");
    }
    let config = Config::load(
        None,
        env(&[
            ("ZERODROP_DATABASE_URL", "postgres://zd:SECRET-DBPASS-hunter2@db.example/zd?sslmode=SECRET-SSLMODE-x9"),
            ("ZERODROP_API__MERCHANT_API_KEYS", "[\"SECRET-MERCHANT-0123456789abcdef0123456789\"]"),
            ("ZERODROP_STATUS_PAGES__SECRET", "SECRET-STATUS-0123456789abcdef0123456789"),
        ]),
    )
    .unwrap();
    let shown = format!("{config:?} {}", config.redacted_toml());
    assert!(leaks(&shown).iter().all(|s| *s == "SECRET-SSLMODE-x9"), "{shown}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("SECRET-MERCHANT") && !shown.contains("SECRET-STATUS"),
        "{shown}"
    );
}

fn uuid_like() -> String {
    format!("{:x}{:x}", std::process::id(), zerodrop_store::now_ms())
}
