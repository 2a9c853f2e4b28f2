//! The admin command line: the real binary against a real Redis.

use std::path::Path;

use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};
use webhook_dispatcher::demo::token_server::{TokenServer, TokenServerOptions};
use webhook_dispatcher::template::TemplateStore;

use crate::helpers::{Demo, World, cli};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_is_imported_then_listed_read_and_deleted() {
    let world = World::new(1);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "crm.json",
        &json!({"id": "crm", "url": "https://crm.test/hooks",
                "auth": {"type": "basic", "username": "u", "password": "cl1-s3cret"}})
        .to_string(),
    );
    write(
        dir.path(),
        "sms.yaml",
        "id: sms\nurl: https://sms.test/{{ profile.Identity }}\nmethod: PUT\nheaders:\n  X-Campaign: \"{{ targetId }}\"\n",
    );
    write(
        dir.path(),
        "broken.json",
        r#"{"id": "broken", "url": "https://x.test/", "batch_size": 0}"#,
    );
    write(dir.path(), "notes.txt", "not a template");

    let import = cli(
        &world,
        &["template", "import", dir.path().to_str().unwrap(), "--no-test"],
    );
    assert_eq!(
        import.code, 1,
        "one file failed: {}{}",
        import.stdout, import.stderr
    );
    assert!(
        import.stdout.contains("broken.json: FAILED: batch_size"),
        "{}",
        import.stdout
    );
    assert!(
        import.stderr.contains("2 imported, 1 failed"),
        "{}",
        import.stderr
    );

    let list = cli(&world, &["template", "list", "--json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let ids: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["crm", "sms"]);
    assert!(!list.stdout.contains("cl1-s3cret"));
    let human = cli(&world, &["template", "list"]);
    assert!(
        human.stdout.contains("sms") && human.stdout.contains("PUT") && human.stdout.contains("2 templates")
    );

    let get = cli(&world, &["template", "get", "crm", "--json"]);
    assert_eq!(get.code, 0);
    assert_eq!(get.json()["auth"]["password"], "****");
    let missing = cli(&world, &["template", "get", "nope", "--json"]);
    assert_eq!(
        (missing.code, missing.json()["error"].as_str()),
        (1, Some("not_found"))
    );
    let problem = missing.json();
    assert_eq!(
        (&problem["type"], &problem["title"], &problem["status"]),
        (&json!("about:blank"), &json!("Not Found"), &json!(404)),
        "the API's problem shape: {problem}"
    );

    assert_eq!(cli(&world, &["template", "delete", "crm"]).code, 0);
    assert_eq!(cli(&world, &["template", "delete", "crm"]).code, 1);
    assert!(world.store().await.get("crm").await.unwrap().is_none());
    assert!(world.store().await.get("sms").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_tests_the_destination_first_and_token_generate_and_stats_answer() {
    let world = World::new(1);
    let receiver = Receiver::start(|r, _| Reply::status(if r.uri == "/ok" { 200 } else { 503 })).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ok.json",
        &json!({"id": "ok", "url": receiver.url("/ok")}).to_string(),
    );
    write(
        dir.path(),
        "down.json",
        &json!({"id": "down", "url": receiver.url("/down")}).to_string(),
    );

    let put = cli(
        &world,
        &[
            "template",
            "put",
            dir.path().join("ok.json").to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(put.code, 0, "{}{}", put.stdout, put.stderr);
    assert_eq!(put.json()["test"]["status"], 200);
    assert_eq!(receiver.requests().len(), 1);
    assert_eq!(receiver.requests()[0].json()["is_test"], true);
    let down = cli(
        &world,
        &["template", "put", dir.path().join("down.json").to_str().unwrap()],
    );
    assert_eq!(down.code, 1);
    assert!(down.stderr.contains("HTTP 503"), "{}", down.stderr);
    assert!(world.store().await.get("down").await.unwrap().is_none());

    let server = TokenServer::start(TokenServerOptions::default()).await;
    let o = server.options();
    write(
        dir.path(),
        "oauth.json",
        &json!({"id": "oauth", "url": receiver.url("/ok"),
                "auth": {"type": "oauth2", "token_url": server.url(), "client_id": o.client_id,
                         "client_secret": o.client_secret}})
        .to_string(),
    );
    let put = cli(
        &world,
        &["template", "put", dir.path().join("oauth.json").to_str().unwrap()],
    );
    assert_eq!(put.code, 0, "{}", put.stderr);
    let token = cli(&world, &["token", "generate", "oauth", "--json"]);
    assert_eq!(token.code, 0, "{}", token.stderr);
    assert_eq!(token.json()["access_token"], "****");
    let revealed = cli(&world, &["token", "generate", "oauth", "--reveal"]);
    let line = revealed
        .stdout
        .lines()
        .find(|l| l.starts_with("access_token"))
        .unwrap();
    assert!(server.is_valid(line.split_whitespace().last().unwrap()), "{line}");

    let stats = cli(&world, &["stats", "42", "--json"]);
    assert_eq!(stats.code, 0);
    assert_eq!(stats.json()["targetId"], 42);
    assert_eq!(stats.json()["dispatch_failed"], false);
    assert_eq!(cli(&world, &["stats", "forty-two"]).code, 2, "a usage error");
    let usage = cli(&world, &["stats", "forty-two", "--json"]);
    assert_eq!(usage.code, 2, "a usage error, with --json too");
    let problem = usage.json();
    assert_eq!(problem["error"], "invalid_usage", "{problem}");
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["field"], "<TARGET_ID>");
    assert!(
        problem["detail"].as_str().unwrap().contains("forty-two"),
        "{problem}"
    );
    // A missing subcommand or argument is a usage error too, with --json a problem object.
    let missing = cli(&world, &["--json", "dlq"]);
    assert_eq!(missing.code, 2);
    assert_eq!(missing.json()["error"], "invalid_usage");
    let missing = cli(&world, &["template", "put", "--json"]);
    assert_eq!(missing.code, 2);
    let problem = missing.json();
    assert!(
        problem["detail"].as_str().unwrap().contains("<FILE>"),
        "{problem}"
    );
    assert!(problem["field"].as_str().unwrap().contains("<FILE>"), "{problem}");
}

/// The binary with only the given `WD_*` variables.
fn bare(args: &[&str], vars: &[(&str, &str)]) -> crate::helpers::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-dispatcher"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("WD_")) {
        command.env_remove(key);
    }
    let output = command
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .expect("runs");
    crate::helpers::Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every key of a TOML document, as dotted paths (`kafka.properties` as one key).
fn keys(table: &toml::Table, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in table {
        let path = format!("{prefix}{key}");
        match value {
            toml::Value::Table(inner) if key != "properties" => out.extend(keys(inner, &format!("{path}."))),
            _ => out.push(path),
        }
    }
    out.sort();
    out
}

#[test]
fn config_prints_toml_shaped_like_the_defaults_file_with_secrets_masked() {
    let vars = [
        ("WD_ADMIN_TOKEN", "s3cret-admin-token"),
        ("WD_MAX_INFLIGHT", "77"),
        ("WD_REDIS_URL", "redis://app:redis-pw@redis.internal:6380/2"),
        (
            "WD_KAFKA_PROPERTIES",
            "sasl.password=kafka-pw,client.id=dispatcher-7",
        ),
        ("WD_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
    ];
    let output = bare(&["config"], &vars);
    assert_eq!(output.code, 0, "{}", output.stderr);
    for secret in ["s3cret-admin-token", "redis-pw", "kafka-pw", "MDEyMzQ1"] {
        assert!(
            !output.stdout.contains(secret),
            "{secret} printed:\n{}",
            output.stdout
        );
    }
    let printed: toml::Table = toml::from_str(&output.stdout).expect("TOML");
    let defaults: toml::Table =
        toml::from_str(&std::fs::read_to_string("config/default.toml").unwrap()).unwrap();
    assert_eq!(keys(&printed, ""), keys(&defaults, ""));
    assert_eq!(printed["max_inflight"].as_integer(), Some(77));
    assert_eq!(printed["admin_token"].as_str(), Some("****"));
    assert_eq!(printed["secret_key"].as_str(), Some("****"));
    assert_eq!(
        printed["redis"]["url"].as_str(),
        Some("redis://app:****@redis.internal:6380/2"),
        "only the password is masked"
    );
    let properties = &printed["kafka"]["properties"];
    assert_eq!(properties["sasl.password"].as_str(), Some("****"));
    assert_eq!(properties["client.id"].as_str(), Some("dispatcher-7"));

    let json = bare(&["config", "--json"], &vars);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let json = json.json();
    assert_eq!(json["max_inflight"], 77);
    assert_eq!(json["redis"]["url"], "redis://app:****@redis.internal:6380/2");
    assert_eq!(json["kafka"]["properties"]["sasl.password"], "****");
}

#[test]
fn the_printed_configuration_is_a_configuration_file_that_gives_it_back() {
    let vars = [
        ("WD_RETRY_DELAYS", "250ms,10s,2m"),
        ("WD_ALLOWED_NETWORKS", "10.20.0.0/16"),
        ("WD_KAFKA_BROKERS", "k1:9092,k2:9092"),
        ("WD_LOG_FORMAT", "json"),
    ];
    let first = bare(&["config"], &vars);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("effective.toml");
    std::fs::write(&file, &first.stdout).unwrap();
    let file = file.to_str().unwrap();
    let by_flag = bare(&["config", "--config", file], &[]);
    assert_eq!(
        (by_flag.code, &by_flag.stdout),
        (0, &first.stdout),
        "{}",
        by_flag.stderr
    );
    let by_variable = bare(&["config"], &[("WD_CONFIG", file)]);
    assert_eq!((by_variable.code, &by_variable.stdout), (0, &first.stdout));
    assert!(
        bare(&["--help"], &[]).stdout.contains("[env: WD_CONFIG="),
        "--config names its variable"
    );
}

#[test]
fn configuration_errors_exit_2_and_print_a_problem_with_json() {
    let output = bare(&["config", "--json"], &[("WD_MAX_INFLIGHT", "0")]);
    assert_eq!(output.code, 2);
    let problem = output.json();
    assert_eq!(
        (&problem["error"], &problem["status"], &problem["title"]),
        (&json!("invalid_config"), &json!(400), &json!("Bad Request"))
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("WD_MAX_INFLIGHT"),
        "{problem}"
    );
    let human = bare(&["template", "list"], &[("WD_MAX_INFLIGHT", "0")]);
    assert_eq!(human.code, 2);
    assert!(human.stderr.starts_with("error: ") && human.stderr.contains("WD_MAX_INFLIGHT"));
    let run = bare(&["run", "--json"], &[]);
    assert_eq!(run.code, 2, "run without brokers and token: {}", run.stderr);
    assert_eq!(run.json()["error"], "invalid_config");
    let usage = bare(&["stats"], &[]);
    assert_eq!(usage.code, 2, "a usage error");
}

#[test]
fn completions_man_page_and_openapi_document_need_no_configuration() {
    // A broken configuration does not matter to them.
    let broken = [("WD_MAX_INFLIGHT", "0")];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = bare(&["completions", shell], &broken);
        assert_eq!(output.code, 0, "{shell}: {}", output.stderr);
        for word in ["webhook-dispatcher", "template", "import", "--no-test", "--json"] {
            assert!(output.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    assert_eq!(bare(&["completions", "tcsh"], &[]).code, 2);
    let man = bare(&["man"], &broken);
    assert_eq!(man.code, 0);
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH webhook-dispatcher 1"),
        "{}",
        man.stdout
    );
    assert!(man.stdout.contains("completions") && man.stdout.contains("WD_CONFIG"));
    let openapi = bare(&["openapi"], &broken);
    assert_eq!(openapi.code, 0);
    assert_eq!(openapi.json()["openapi"], "3.1.0");
}

/// `--help` of every command: each argument and flag has a description.
#[test]
fn every_argument_and_flag_has_help_text() {
    let commands: &[&[&str]] = &[
        &[],
        &["run"],
        &["demo"],
        &["config"],
        &["dlq", "inspect"],
        &["dlq", "replay"],
        &["template", "put"],
        &["template", "get"],
        &["template", "list"],
        &["template", "delete"],
        &["template", "import"],
        &["token", "generate"],
        &["stats"],
        &["completions"],
        &["man"],
        &["openapi"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("-h");
        let help = bare(&args, &[]);
        assert_eq!(help.code, 0, "{command:?}: {}", help.stderr);
        let mut section = "";
        let lines: Vec<&str> = help.stdout.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with(' ') && line.ends_with(':') {
                section = line;
                continue;
            }
            let entry = line.trim_start();
            let is_entry = line.starts_with("  ")
                && (entry.starts_with('-') || entry.starts_with('<') || entry.starts_with('['));
            if !["Arguments:", "Options:"].contains(&section) || !is_entry {
                continue;
            }
            let described_here = entry
                .split_once("  ")
                .is_some_and(|(_, rest)| !rest.trim().is_empty());
            let described_below = lines
                .get(i + 1)
                .is_some_and(|next| next.len() - next.trim_start().len() > line.len() - entry.len());
            assert!(
                described_here || described_below,
                "{command:?}: `{entry}` has no help text:\n{}",
                help.stdout
            );
        }
    }
}

/// The README's first command, as a script runs it: `demo --json` delivers the sample
/// events and prints its summary as one JSON object on stdout (the rest on stderr).
#[test]
fn the_demo_delivers_and_prints_its_summary_as_json() {
    let demo = bare(&["demo", "--events", "200", "--timeout", "90s", "--json"], &[]);
    assert_eq!(demo.code, 0, "{}\n{}", demo.stdout, demo.stderr);
    let summary = demo.json();
    assert_eq!(summary["finished"], true, "{summary}");
    assert!(summary["delivered"].as_u64() > Some(0), "{summary}");
    assert_eq!(summary["dead_letters"]["invalid_event"], 2, "{summary}");
    assert_eq!(summary["dead_letters"]["template_not_found"], 1, "{summary}");
    assert!(summary["receivers"]["crm"].as_u64() > Some(0), "{summary}");
    assert!(summary["oauth2_token_requests"].as_u64() > Some(0), "{summary}");
    assert!(
        demo.stderr.contains("/console/"),
        "the console's address is said: {}",
        demo.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_create_never_replaces_an_existing_template() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "crm.json",
        &json!({"id": "crm", "url": receiver.url("/crm"), "batch_size": 50}).to_string(),
    );
    write(
        dir.path(),
        "again.json",
        &json!({"id": "crm", "url": receiver.url("/other")}).to_string(),
    );
    let create = |file: &str| {
        cli(
            &world,
            &[
                "template",
                "create",
                dir.path().join(file).to_str().unwrap(),
                "--json",
            ],
        )
    };
    let created = create("crm.json");
    assert_eq!(created.code, 0, "{}{}", created.stdout, created.stderr);
    assert_eq!(created.json()["created"], true);
    let again = create("again.json");
    assert_eq!(again.code, 1);
    let problem = again.json();
    assert_eq!(problem["error"], "already_exists", "{problem}");
    assert_eq!(problem["status"], 412);
    let stored = world.store().await.get("crm").await.unwrap().unwrap();
    assert_eq!(
        (stored.url.as_str(), stored.batch_size),
        (receiver.url("/crm").as_str(), 50)
    );
}

/// The README's walkthrough: the demo prints each receiver's credentials beside its URL, and
/// a Basic-auth webhook added for its helpdesk with them passes Test & Save every time (the
/// receiver answers 200; its 1-in-12 failures are for deliveries only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_added_for_the_demos_helpdesk_with_its_printed_credentials_saves() {
    let demo = Demo::start();
    assert!(demo.helpdesk.starts_with("http://127.0.0.1:"), "{}", demo.printed);
    assert!(
        demo.printed.contains("client id") && demo.printed.contains("client secret"),
        "{}",
        demo.printed
    );
    let client = reqwest::Client::new();
    for n in 0..13 {
        let template = json!({"url": format!("{}tickets", demo.helpdesk), "name": "Low ratings",
                              "auth": {"type": "basic", "username": demo.username,
                                       "password": demo.password}});
        let answer = client
            .put(format!("{}/v1/templates/helpdesk-{n}", demo.api))
            .bearer_auth(&demo.admin_token)
            .header("if-none-match", "*")
            .header("content-type", "application/json")
            .body(template.to_string())
            .send()
            .await
            .unwrap();
        let status = answer.status();
        assert_eq!(status, 201, "Test & Save {n}: {}", answer.text().await.unwrap());
    }
    let status = demo.terminate();
    assert!(status.success(), "the demo ends cleanly: {status}");
}
