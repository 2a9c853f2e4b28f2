//! `schemas/trigger-event.schema.json` and the parser (`event.rs`) agree: every example in
//! the README and docs/, every valid fixture and the events the tests publish pass both;
//! every invalid fixture is refused by both.

use std::path::{Path, PathBuf};

use serde_json::Value;
use webhook_dispatcher::event::{EventLimits, TriggerEvent};

const LIMITS: EventLimits = EventLimits {
    max_bytes: 1024 * 1024,
    max_profiles: 10_000,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schemas/trigger-event.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema is a valid draft 2020-12 schema")
}

fn fixtures(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("tests/fixtures/events").join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| (path.display().to_string(), std::fs::read(&path).unwrap()))
        .collect()
}

/// Every fenced `json` block of a Markdown file that parses and looks like a trigger event
/// (dead-letter and retry records, which add `chunk` and `attempts`, are not), and every
/// event published with `echo '…' | kcat`.
fn examples_in(path: &Path) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut examples = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim_start()) {
            (None, "```json") => block = Some(String::new()),
            (Some(body), "```") => {
                if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(body)
                    && ["event_id", "template_id", "targetId"]
                        .iter()
                        .all(|k| object.contains_key(*k))
                    && !object.contains_key("attempts")
                {
                    examples.push((format!("{}: {body}", path.display()), body.clone().into_bytes()));
                }
                block = None;
            }
            (Some(body), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, other) => {
                // A one-line event published by hand: `echo '{...}' | kcat ...`.
                if let Some(event) = other
                    .strip_prefix("echo '")
                    .and_then(|rest| rest.split_once('\''))
                {
                    examples.push((
                        format!("{}: {}", path.display(), event.0),
                        event.0.as_bytes().to_vec(),
                    ));
                }
            }
        }
    }
    examples
}

fn accepted_by_the_schema(validator: &jsonschema::Validator, bytes: &[u8]) -> Result<(), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[test]
fn documented_examples_and_valid_fixtures_pass_the_schema_and_the_parser() {
    let validator = validator();
    let mut cases = fixtures("valid");
    cases.extend(examples_in(&root().join("README.md")));
    let mut docs: Vec<_> = std::fs::read_dir(root().join("docs"))
        .map(|dir| dir.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    docs.sort();
    let documented = cases.len();
    for doc in docs.iter().filter(|p| p.extension().is_some_and(|e| e == "md")) {
        cases.extend(examples_in(doc));
    }
    assert!(cases.len() > documented, "docs/ shows at least one trigger event");
    let schema_text = std::fs::read_to_string(root().join("schemas/trigger-event.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&schema_text).unwrap();
    for example in schema["examples"].as_array().unwrap() {
        cases.push(("the schema's example".into(), example.to_string().into_bytes()));
    }
    cases.push((
        "the events the integration tests publish".into(),
        crate::helpers::event("e1", "t", 3),
    ));
    for (name, bytes) in cases {
        assert_eq!(accepted_by_the_schema(&validator, &bytes), Ok(()), "{name}");
        if let Err(err) = TriggerEvent::parse(&bytes, LIMITS) {
            panic!("{name}: the parser refused it: {err}");
        }
    }
}

#[test]
fn invalid_fixtures_are_refused_by_the_schema_and_the_parser() {
    let validator = validator();
    let invalid = fixtures("invalid");
    assert!(invalid.len() >= 10);
    for (name, bytes) in invalid {
        assert!(
            accepted_by_the_schema(&validator, &bytes).is_err(),
            "{name}: the schema accepted it"
        );
        assert!(
            TriggerEvent::parse(&bytes, LIMITS).is_err(),
            "{name}: the parser accepted it"
        );
    }
}
