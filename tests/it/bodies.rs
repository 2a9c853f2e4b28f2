//! Body templates end to end: the recipes of docs/formats.md as written there, saved through
//! the admin API (whose test request must pass a receiver that checks the exact shape) and
//! delivered from Kafka with hostile values; bodies that cannot be valid refused before they
//! are saved; the preview.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use webhook_dispatcher::demo::receiver::{Received, Receiver, Reply};

use crate::helpers::{TestApp, World, admin_call, eventually};

/// The recipe marked `<!-- recipe: NAME -->` in docs/formats.md, sent to `receiver` instead
/// of the example host (the path is kept).
fn recipe(name: &str, receiver: &Receiver) -> Value {
    let docs = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/formats.md"));
    let marker = format!("<!-- recipe: {name} -->\n```json\n");
    let start = docs
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/formats.md has no recipe {name}"))
        + marker.len();
    let end = start + docs[start..].find("\n```").expect("the recipe's block ends");
    let mut template: Value = serde_json::from_str(&docs[start..end]).expect("the recipe is JSON");
    let url = url::Url::parse(template["url"].as_str().unwrap()).unwrap();
    template["url"] = json!(receiver.url(url.path()));
    if template["auth"]["type"] == "basic" {
        template["auth"]["password"] = json!("recipe-password");
    }
    template
}

/// Every key of `a` and `b` the same, with values of the same JSON type, all the way down
/// (list items against the first expected item).
fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            a.keys().collect::<BTreeSet<_>>() == b.keys().collect::<BTreeSet<_>>()
                && a.iter().all(|(k, v)| same_shape(v, &b[k]))
        }
        (Value::Array(a), Value::Array(b)) => match b.first() {
            Some(item) => a.iter().all(|v| same_shape(v, item)),
            None => a.is_empty(),
        },
        (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) => true,
        (Value::Number(_), Value::Number(_)) | (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// A receiver that answers 200 only to a JSON body of `shape`'s shape, sent as JSON.
async fn json_receiver(shape: Value) -> Receiver {
    Receiver::start(move |r, _| {
        let ok = r.header("content-type") == Some("application/json")
            && serde_json::from_slice::<Value>(&r.body).is_ok_and(|body| same_shape(&body, &shape));
        Reply::status(if ok { 200 } else { 400 })
    })
    .await
}

fn form(r: &Received) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&r.body).into_owned().collect()
}

/// A name a profile might carry that breaks naive string building in every format.
const HOSTILE: &str = "Ann \"Nan\" O'Neil\n}, \"priority\": \"low\", {{ targetId }} & To=+1999 é";

async fn save(app: &TestApp, template: &Value) -> (u16, Value) {
    let id = template["id"].as_str().unwrap();
    admin_call(app, "PUT", &format!("/v1/templates/{id}"), Some(template.clone())).await
}

async fn delivered(receiver: &Receiver, count: u64) -> Vec<Received> {
    eventually(Duration::from_secs(30), "the deliveries arrive", || async {
        receiver.count() >= count
    })
    .await;
    receiver.requests()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recipes_send_the_exact_shapes_their_tools_expect() {
    let world = World::new(1);
    let helpdesk = json_receiver(json!({"ticket": {"subject": "", "comment": {"body": ""},
        "requester": {"name": "", "email": ""}, "priority": "", "tags": [""]}}))
    .await;
    let sms = Receiver::start(|r, _| {
        let names: Vec<String> = form(r).into_iter().map(|(k, _)| k).collect();
        let ok = r.header("content-type") == Some("application/x-www-form-urlencoded")
            && names == ["To", "From", "Body"];
        Reply::status(if ok { 200 } else { 400 })
    })
    .await;
    let chat = Receiver::start(|r, _| {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let blocks = body["blocks"].as_array().cloned().unwrap_or_default();
        let ok = body["text"].is_string()
            && body.as_object().is_some_and(|o| o.len() == 2)
            && blocks.first().is_some_and(|b| b["type"] == "section")
            && blocks[1..]
                .iter()
                .all(|b| same_shape(b, &json!({"type": "", "elements": [{"type": "", "text": ""}]})));
        Reply::status(if ok { 200 } else { 400 })
    })
    .await;
    let app = TestApp::spawn(&world, &[]).await;
    // Saved through the API: each test request (sample profiles) passed its receiver.
    for (name, receiver) in [("helpdesk", &helpdesk), ("sms", &sms), ("chat", &chat)] {
        let (status, saved) = save(&app, &recipe(name, receiver)).await;
        assert_eq!(status, 201, "{name}: {saved}");
        assert_eq!(saved["test"]["passed"], true, "{name}: {saved}");
    }
    let profiles = json!([
        {"name": HOSTILE, "email": "ann@example.com", "phone": "+15550100", "rating": 1, "comment": "late\nand cold"},
        {"name": "Bob", "email": "bob@example.com", "phone": "+15550101", "rating": 2, "comment": "ok"},
    ]);
    let key_values = json!({"order_id": "A-17", "sender": "+15550199"});
    for template in ["low-rating-ticket", "sms-reminder", "low-ratings-to-chat"] {
        let event = json!({"event_id": format!("{template}-1"), "template_id": template, "targetId": 42,
                           "key_values": key_values, "profiles": profiles});
        world.produce(&[(None, event.to_string().into_bytes())]).await;
    }

    let tickets = delivered(&helpdesk, 3).await;
    let ticket = tickets
        .iter()
        .map(Received::json)
        .find(|t| t["ticket"]["requester"]["email"] == "ann@example.com")
        .expect("Ann's ticket");
    assert_eq!(
        ticket,
        json!({"ticket": {"subject": format!("Low rating from {HOSTILE}"),
            "comment": {"body": format!("{HOSTILE} rated order A-17 1/5: late\nand cold")},
            "requester": {"name": HOSTILE, "email": "ann@example.com"},
            "priority": "high", "tags": ["campaign", "campaign-42"]}})
    );
    assert!(
        tickets.iter().all(|t| t.header("authorization").is_some()),
        "Basic auth is sent"
    );

    let texts = delivered(&sms, 3).await;
    let ann = texts
        .iter()
        .map(form)
        .find(|f| f[0].1 == "+15550100")
        .expect("Ann's text");
    assert_eq!(
        ann,
        [
            ("To".to_string(), "+15550100".to_string()),
            ("From".to_string(), "+15550199".to_string()),
            (
                "Body".to_string(),
                format!("Hi {HOSTILE}, your order A-17 ships today.")
            ),
        ]
    );

    let messages = delivered(&chat, 2).await;
    let message = messages.last().unwrap().json();
    assert_eq!(message["text"], "Campaign 42: 2 low ratings");
    assert_eq!(
        message["blocks"][1]["elements"][0]["text"],
        format!("{HOSTILE}: 1/5")
    );
    assert_eq!(message["blocks"][2]["elements"][0]["text"], "Bob: 2/5");
    assert_eq!(app.metrics.deliveries("delivered"), 5);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_cannot_be_valid_is_refused_before_it_is_saved() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let app = TestApp::spawn(&world, &[]).await;
    // A placeholder inside JSON quotes: a sample name makes invalid JSON.
    let quoted = json!({"id": "quoted", "url": receiver.url("/"),
        "body": {"template": "{\"subject\": \"Low rating from {{ profile.name }}\"}"}});
    for path in ["/v1/templates/quoted", "/v1/templates/quoted?test=false"] {
        let (status, problem) = admin_call(&app, "PUT", path, Some(quoted.clone())).await;
        assert_eq!(status, 422, "{path}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("body.template: renders to invalid JSON"),
            "{path}: {problem}"
        );
        assert!(detail.contains("~ profile.name"), "the fix is said: {problem}");
    }
    // A body on a GET, and a Content-Type header beside a body: named fields.
    let get = json!({"id": "get", "url": receiver.url("/"), "method": "GET", "body": {"template": "{}"}});
    let (status, problem) = admin_call(&app, "PUT", "/v1/templates/get", Some(get)).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("body")),
        "{problem}"
    );
    assert_eq!(receiver.count(), 0, "nothing that cannot be valid is sent");
    let (status, _) = admin_call(&app, "GET", "/v1/templates/quoted", None).await;
    assert_eq!(status, 404, "nothing was saved");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_renders_a_template_against_a_sample_or_a_given_event_without_sending() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let app = TestApp::spawn(&world, &[]).await;
    let template = json!({"url": receiver.url("/tickets"), "signing_secret": "****",
        "auth": {"type": "basic", "username": "u", "password": "****"},
        "body": {"template": "{\"subject\": {{ \"Low rating from \" ~ profile.name }}}"}});
    // The sample event: a sample value for every field the body reads.
    let (status, preview) = admin_call(
        &app,
        "POST",
        "/v1/templates/preview",
        Some(json!({"template": template})),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["requests_total"], 2, "one per sample profile: {preview}");
    let first = &preview["requests"][0];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["headers"]["content-type"], "application/json");
    assert_eq!(first["body"], r#"{"subject": "Low rating from sample-name"}"#);
    assert!(first["headers"].get("authorization").is_none(), "{first}");
    assert_eq!(preview["event"]["is_test"], true);
    // A given event, hostile values and all.
    let event = json!({"event_id": "e1", "template_id": "x", "targetId": 7, "key_values": {},
                       "profiles": [{"name": HOSTILE}]});
    let (status, preview) = admin_call(
        &app,
        "POST",
        "/v1/templates/preview",
        Some(json!({"template": template, "event": event})),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    let body: Value = serde_json::from_str(preview["requests"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"subject": format!("Low rating from {HOSTILE}")}));
    // An event without the field the body reads: the render error, as a problem.
    let (status, problem) = admin_call(
        &app,
        "POST",
        "/v1/templates/preview",
        Some(json!({"template": template, "event": {"event_id": "e2", "template_id": "x", "targetId": 7, "key_values": {},
                                                    "profiles": [{"nickname": "Ann"}]}})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("render_error: body.template"),
        "{problem}"
    );
    assert_eq!(receiver.count(), 0, "a preview sends nothing");
    app.stop().await;
}
