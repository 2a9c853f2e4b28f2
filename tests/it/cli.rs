//! The admin command line (§8): the real binary against a real Redis.

use std::path::Path;

use serde_json::json;
use webhook_dispatcher::receiver::{Receiver, Reply};
use webhook_dispatcher::template::TemplateStore;
use webhook_dispatcher::token_server::{TokenServer, TokenServerOptions};

use crate::helpers::{World, cli};

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
}
