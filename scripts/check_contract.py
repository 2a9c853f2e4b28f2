"""The checks of scripts/check-contract. Run it through that script (it sets up the tools)."""

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import traceback
from datetime import date
from pathlib import Path

import yaml

TOOLS = Path(sys.argv[1])
ROOT = Path.cwd()
BINARY = ROOT / "target" / "debug" / "webhook-dispatcher"
SCHEMA = ROOT / "schemas" / "trigger-event.schema.json"
FIXTURES = ROOT / "tests" / "fixtures" / "events"
COMPOSE = ROOT / "docker-compose.yml"
MANIFEST = tomllib.loads((ROOT / "Cargo.toml").read_text())
results = []


def check(name):
    def run(fn):
        try:
            fn()
            results.append((name, None))
            print(f"test contract::{name} ... ok", flush=True)
        except Exception as err:  # noqa: BLE001 - every failure is reported, then counted
            results.append((name, err))
            print(f"test contract::{name} ... FAILED\n{''.join(traceback.format_exception(err)).rstrip()}", flush=True)
        return fn
    return run


def sh(*args, env=None, ok=True):
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    if ok and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def openapi_document():
    return json.loads(sh(BINARY, "openapi").stdout)


@check("openapi_document_is_valid_openapi_3_1")
def _():
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(openapi_document(), f)
        f.flush()
        sh(TOOLS / "openapi-spec-validator", f.name)


@check("openapi_parameters_are_where_the_server_reads_them")
def _():
    doc = openapi_document()
    where = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for p in op.get("parameters", []):
                where[(method, path, p["name"])] = p["in"]
                if p["in"] == "path":
                    assert "{" + p["name"] + "}" in path, f"{method} {path}: path parameter {p['name']} is not in the path"
    expected = {
        ("get", "/v1/templates", "after"): "query", ("get", "/v1/templates", "limit"): "query",
        ("put", "/v1/templates/{id}", "test"): "query", ("post", "/v1/templates/{id}/token", "reveal"): "query",
        ("put", "/v1/templates/{id}", "id"): "path", ("get", "/v1/campaigns/{target_id}/stats", "target_id"): "path",
    }
    for key, location in expected.items():
        assert where.get(key) == location, f"{key}: {where.get(key)}, expected {location}"


@check("openapi_errors_are_problem_details")
def _():
    doc = openapi_document()
    problem = doc["components"]["schemas"]["Problem"]
    for member in ("type", "title", "status", "detail", "error", "message"):
        assert member in problem["properties"] and member in problem["required"], member
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = op["responses"]
            assert "401" in codes, f"{method} {path}: no 401"
            if path != "/v1/openapi.json":
                assert "503" in codes, f"{method} {path}: no 503"
            if "requestBody" in op:
                assert "413" in codes, f"{method} {path}: no 413"
            for code, answer in codes.items():
                if code[0] in "45":
                    assert list(answer["content"]) == ["application/problem+json"], f"{method} {path} {code}"


@check("event_schema_is_a_valid_draft_2020_12_schema")
def _():
    assert json.loads(SCHEMA.read_text())["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    sh(TOOLS / "check-jsonschema", "--check-metaschema", SCHEMA)


@check("event_fixtures_agree_with_the_schema")
def _():
    valid = sorted((FIXTURES / "valid").glob("*.json"))
    invalid = sorted((FIXTURES / "invalid").glob("*.json"))
    assert valid and invalid
    sh(TOOLS / "check-jsonschema", "--schemafile", SCHEMA, *valid)
    for fixture in invalid:
        done = sh(TOOLS / "check-jsonschema", "--schemafile", SCHEMA, fixture, ok=False)
        assert done.returncode == 1, f"{fixture.name}: accepted by the schema\n{done.stdout}{done.stderr}"


@check("docker_compose_passes_yamllint")
def _():
    sh(TOOLS / "yamllint", "--strict", COMPOSE)


@check("docker_compose_matches_the_compose_specification")
def _():
    sh(TOOLS / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE)


@check("docker_compose_runs_kraft_kafka_redis_the_dispatcher_and_a_receiver")
def _():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    kafka = services["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"] and "KAFKA_CONTROLLER_QUORUM_VOTERS" in kafka, "KRaft mode"
    assert services["redis"]["image"].startswith("redis:")
    dispatcher = services["dispatcher"]
    assert dispatcher["build"] == ".", "built from the Dockerfile"
    receiver_script = services["receiver"]["volumes"][0].split(":")[0]
    assert (ROOT / receiver_script).is_file(), receiver_script
    created = services["kafka-topics"]["command"][0]
    for topic in ("campaign-triggers", "webhook-retry-1", "webhook-retry-2", "webhook-retry-held", "webhook-dlq"):
        assert topic in created, f"{topic} is not created"
    # The dispatcher accepts its environment, and the receiver's network is allowed.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WD_")}
    env.update({k: str(v) for k, v in dispatcher["environment"].items()})
    printed = json.loads(sh(BINARY, "config", "--json", env=env).stdout)
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert printed["allowed_networks"] == [subnet], printed["allowed_networks"]
    assert printed["kafka"]["brokers"] == "kafka:9092"


def anchors(page):
    """GitHub's heading anchors of a Markdown page."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    slugs = []
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        slugs.append(slug)
    return slugs


@check("documentation_links_resolve_inside_the_repository")
def _():
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web page (the standards cited), not a file
            file, _, anchor = target.partition("#")
            resolved = (page.parent / file).resolve() if file else page
            if ROOT.resolve() not in [resolved, *resolved.parents]:
                broken.append(f"{page.name}: {target} leaves the repository")
            elif not resolved.exists():
                broken.append(f"{page.name}: {target} does not exist")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page.name}: {target}: no such heading")
    assert not broken, "\n".join(broken)


@check("readme_starts_with_the_demo_and_the_test_suite")
def _():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands[:2] == ["cargo run --release -- demo", "./scripts/test"], commands


# The subsections a release may have (Keep a Changelog 1.1.0), in its order.
CHANGE_TYPES = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")


@check("changelog_follows_keep_a_changelog")
def _():
    """Keep a Changelog 1.1.0: the title; `## [Unreleased]` first, then releases as `## [x.y.z]
    - YYYY-MM-DD`, newest first; in each, only its change types, each at most once. Where
    Cargo.toml names the repository, [Unreleased] and every release need a link reference."""
    text = re.sub(r"```.*?```", "", (ROOT / "CHANGELOG.md").read_text(), flags=re.S)
    assert text.startswith("# Changelog\n"), f"the title is {text.splitlines()[0]!r}, not '# Changelog'"
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    headings = [section.splitlines()[0].strip() for section in sections]
    assert headings and headings[0] == "[Unreleased]", f"the first section is {headings[:1]}, not [Unreleased]"
    releases = []
    for heading in headings[1:]:
        release = re.fullmatch(r"\[(\d+)\.(\d+)\.(\d+)\] - (\d{4}-\d{2}-\d{2})", heading)
        assert release, f"## {heading}: not `## [x.y.z] - YYYY-MM-DD`"
        releases.append((tuple(int(n) for n in release.group(1, 2, 3)), date.fromisoformat(release.group(4))))
    versions = [version for version, _ in releases]
    assert versions == sorted(set(versions), reverse=True), f"versions not newest first, or twice: {headings[1:]}"
    dates = [day for _, day in releases]
    assert dates == sorted(dates, reverse=True), f"release dates not newest first: {headings[1:]}"
    for heading, section in zip(headings, sections):
        types = re.findall(r"^### +(.+?) *$", section, flags=re.M)
        unknown = [name for name in types if name not in CHANGE_TYPES]
        assert not unknown, f"## {heading}: {unknown} are not change types of Keep a Changelog {CHANGE_TYPES}"
        twice = sorted({name for name in types if types.count(name) > 1})
        assert not twice, f"## {heading}: ### {', '.join(twice)} more than once"
    if MANIFEST["package"].get("repository"):
        for label in ["Unreleased", *(".".join(map(str, version)) for version in versions)]:
            assert re.search(rf"^\[{re.escape(label)}\]: +\S+", text, flags=re.M | re.I), f"no link reference [{label}]: …"


# What the LICENSE file of each licence Cargo.toml may name says; teach it another one.
LICENCE_TEXTS = {
    "Apache-2.0": ("Apache License", "Version 2.0"),
    "MIT": ("Permission is hereby granted, free of charge",),
    "BSD-3-Clause": ("Redistribution and use in source and binary forms", "Neither the name"),
    "MPL-2.0": ("Mozilla Public License Version 2.0",),
}


@check("license_matches_cargo_toml")
def _():
    licence = MANIFEST["package"].get("license")
    assert licence in LICENCE_TEXTS, \
        f"Cargo.toml license = {licence!r}: not one SPDX identifier this check knows ({', '.join(LICENCE_TEXTS)})"
    text = " ".join((ROOT / "LICENSE").read_text().split())
    for phrase in LICENCE_TEXTS[licence]:
        assert phrase in text, f"LICENSE does not read like {licence}: no {phrase!r}"


failed = [name for name, err in results if err]
print(f"\ntest result: {'ok' if not failed else 'FAILED'}. {len(results) - len(failed)} passed; {len(failed)} failed; "
      "0 ignored; 0 measured; 0 filtered out (contract: OpenAPI, event schema, docker-compose.yml, docs)")
sys.exit(1 if failed else 0)
