use super::*;

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load_from(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn error_of(vars: &[(&str, &str)]) -> String {
    load(vars).expect_err("should be refused").to_string()
}

#[test]
fn defaults_match_the_spec() {
    let c = load(&[]).unwrap();
    assert_eq!(c.trigger_topic, "campaign-triggers");
    assert_eq!(c.retry_topic(1), "webhook-retry-1");
    assert_eq!(
        c.retry_delays,
        vec![Duration::from_secs(10), Duration::from_secs(60)]
    );
    assert_eq!(c.dlq_topic, "webhook-dlq");
    assert_eq!(c.kafka.group_id, "webhook-dispatcher");
    assert_eq!(c.redis.url.expose(), "redis://127.0.0.1:6379");
    assert_eq!(c.redis.prefix, "webhook:");
    assert_eq!(c.http_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(c.metrics_addr.to_string(), "0.0.0.0:9090");
    assert_eq!(c.max_inflight, 512);
    assert_eq!(c.max_per_host, 64);
    assert_eq!(c.drain_timeout, Duration::from_secs(25));
    assert_eq!(c.worker_threads, 1, "one event loop unless asked");
    assert_eq!(c.log_format, LogFormat::Auto);
    assert!(c.admin_token.is_none() && c.allowed_networks.is_empty());
}

#[test]
fn every_spec_variable_takes_effect() {
    let c = load(&[
        ("WD_KAFKA_BROKERS", "k1:9092,k2:9092"),
        ("WD_KAFKA_GROUP_ID", "g"),
        ("WD_TRIGGER_TOPIC", "t"),
        ("WD_RETRY_TOPIC_PREFIX", "r"),
        ("WD_RETRY_DELAYS", "1s, 2m,3h"),
        ("WD_DLQ_TOPIC", "d"),
        ("WD_REDIS_URL", "rediss://:pw@cache:6380/2"),
        ("WD_REDIS_PREFIX", "p:"),
        ("WD_HTTP_ADDR", "127.0.0.1:1"),
        ("WD_METRICS_ADDR", "[::1]:2"),
        ("WD_ADMIN_TOKEN", "tok-of-16-chars!"),
        ("WD_ALLOWED_NETWORKS", "127.0.0.1/32,::1"),
        ("WD_MAX_INFLIGHT", "7"),
        ("WD_WORKER_THREADS", "4"),
        ("WD_LOG_FORMAT", "json"),
        (
            "WD_KAFKA_PROPERTIES",
            "security.protocol=SASL_SSL,debug=fetch,consumer,sasl.password=pw",
        ),
    ])
    .unwrap();
    assert_eq!(c.kafka.brokers, "k1:9092,k2:9092");
    assert_eq!(c.kafka.group_id, "g");
    assert_eq!(c.trigger_topic, "t");
    assert_eq!(c.retry_topic(2), "r-2");
    assert_eq!(
        c.retry_delays,
        vec![
            Duration::from_secs(1),
            Duration::from_secs(120),
            Duration::from_secs(3 * 3600)
        ]
    );
    assert_eq!(c.dlq_topic, "d");
    assert_eq!(c.worker_threads, 4);
    assert_eq!(c.redis.url.expose(), "rediss://:pw@cache:6380/2");
    assert_eq!(c.redis.prefix, "p:");
    assert_eq!(c.http_addr.to_string(), "127.0.0.1:1");
    assert_eq!(c.metrics_addr.to_string(), "[::1]:2");
    assert_eq!(
        c.admin_token.as_ref().map(Secret::expose),
        Some("tok-of-16-chars!")
    );
    assert_eq!(c.allowed_networks.len(), 2);
    assert_eq!(c.max_inflight, 7);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.kafka.properties["security.protocol"].value, "SASL_SSL");
    assert_eq!(
        c.kafka.properties["debug"].value, "fetch,consumer",
        "values may hold commas"
    );
    assert_eq!(c.kafka.properties["sasl.password"].value, "pw");
    c.require_for_run().unwrap();
    // Secrets never print.
    let printed = format!("{c:?}");
    assert!(!printed.contains("pw") && !printed.contains("tok\""), "{printed}");
}

#[test]
fn a_short_admin_token_is_refused_naming_the_key_and_never_shown() {
    let err = Config::load_from(vec![("WD_ADMIN_TOKEN".to_string(), "change-me".to_string())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin_token (WD_ADMIN_TOKEN)"), "{err}");
    assert!(err.contains("at least 16 characters"), "{err}");
    assert!(!err.contains("change-me"), "{err}");
    let fifteen = "x".repeat(MIN_ADMIN_TOKEN_CHARS - 1);
    assert!(Config::load_from(vec![("WD_ADMIN_TOKEN".to_string(), fifteen)]).is_err());
    let sixteen = "x".repeat(MIN_ADMIN_TOKEN_CHARS);
    let config = Config::load_from(vec![("WD_ADMIN_TOKEN".to_string(), sixteen.clone())]).unwrap();
    assert_eq!(
        config.admin_token.as_ref().map(Secret::expose),
        Some(sixteen.as_str())
    );
    let unset = Config::load_from(Vec::<(String, String)>::new()).unwrap();
    assert!(
        unset.admin_token.is_none(),
        "unset stays allowed until `run` requires it"
    );
}

#[test]
fn invalid_values_name_the_key_and_variable() {
    for (vars, key) in [
        (
            vec![("WD_MAX_INFLIGHT", "zero")],
            "max_inflight (WD_MAX_INFLIGHT)",
        ),
        (vec![("WD_MAX_INFLIGHT", "0")], "max_inflight (WD_MAX_INFLIGHT)"),
        (
            vec![("WD_MAX_INFLIGHT", "3"), ("WD_WORKER_THREADS", "4")],
            "max_inflight (WD_MAX_INFLIGHT)",
        ),
        (
            vec![("WD_WORKER_THREADS", "0")],
            "worker_threads (WD_WORKER_THREADS)",
        ),
        (
            vec![("WD_RETRY_DELAYS", "10 parsecs")],
            "retry_delays (WD_RETRY_DELAYS)",
        ),
        (vec![("WD_RETRY_DELAYS", "")], "retry_delays (WD_RETRY_DELAYS)"),
        (vec![("WD_HTTP_ADDR", "localhost")], "http_addr (WD_HTTP_ADDR)"),
        (vec![("WD_METRICS_ADDR", ":90")], "metrics_addr (WD_METRICS_ADDR)"),
        (vec![("WD_ALLOWED_NETWORKS", "10.0.0.0/99")], "allowed_networks"),
        (vec![("WD_LOG_FORMAT", "xml")], "log_format (WD_LOG_FORMAT)"),
        (
            vec![("WD_DELIVERY_LOG_SUCCESS_SAMPLE", "2")],
            "delivery_log.success_sample (WD_DELIVERY_LOG_SUCCESS_SAMPLE)",
        ),
        (
            vec![("WD_DELIVERY_LOG_SUCCESS_SAMPLE", "half")],
            "delivery_log.success_sample (WD_DELIVERY_LOG_SUCCESS_SAMPLE)",
        ),
        (
            vec![("WD_DELIVERY_LOG_ATTEMPTS_TOPIC", "bad topic")],
            "delivery_log.attempts_topic (WD_DELIVERY_LOG_ATTEMPTS_TOPIC)",
        ),
        (
            vec![("WD_DELIVERY_LOG_CAMPAIGNS", "0")],
            "delivery_log.campaigns (WD_DELIVERY_LOG_CAMPAIGNS)",
        ),
        (
            vec![("WD_TRIGGER_TOPIC", "bad topic")],
            "trigger_topic (WD_TRIGGER_TOPIC)",
        ),
        (vec![("WD_REDIS_URL", "http://x")], "redis.url (WD_REDIS_URL)"),
        (
            vec![("WD_KAFKA_PROPERTIES", "novalue")],
            "kafka.properties (WD_KAFKA_PROPERTIES)",
        ),
        (vec![("WD_HTTPS_ONLY", "maybe")], "https_only (WD_HTTPS_ONLY)"),
        (vec![("WD_MAX_INFLIGT", "5")], "WD_MAX_INFLIGT"),
        (
            vec![("WD_KAFKA_PROPERTIES", "enable.auto.offset.store=true")],
            "kafka.properties.enable.auto.offset.store",
        ),
        (vec![("WD_KAFKA_PROPERTIES", "acks=1")], "kafka.properties.acks"),
        (
            vec![("WD_KAFKA_PROPERTIES", "enable.idempotence=false")],
            "kafka.properties.enable.idempotence",
        ),
        (
            vec![("WD_KAFKA_PROPERTIES", "group.protocol=kip848")],
            "kafka.properties.group.protocol",
        ),
        (
            vec![(
                "WD_KAFKA_PROPERTIES",
                "group.protocol=consumer,session.timeout.ms=6000",
            )],
            "kafka.properties.session.timeout.ms",
        ),
        (
            vec![(
                "WD_KAFKA_PROPERTIES",
                "group.protocol=consumer,partition.assignment.strategy=range",
            )],
            "kafka.properties.partition.assignment.strategy",
        ),
    ] {
        let err = error_of(&vars);
        assert!(err.contains(key), "{vars:?}: {err}");
    }
}

#[test]
fn each_group_protocol_gets_the_consumer_settings_it_takes() {
    let consumer = |properties: &str| {
        let config = load(&[("WD_KAFKA_PROPERTIES", properties)]).unwrap();
        crate::consume::consumer_config(&config)
    };
    let classic = consumer("session.timeout.ms=6000");
    assert_eq!(
        classic.get("partition.assignment.strategy"),
        Some("cooperative-sticky")
    );
    assert_eq!(classic.get("session.timeout.ms"), Some("6000"));
    let kip848 = consumer("group.protocol=consumer");
    assert_eq!(kip848.get("group.protocol"), Some("consumer"));
    for key in [
        "partition.assignment.strategy",
        "session.timeout.ms",
        "heartbeat.interval.ms",
    ] {
        assert_eq!(kip848.get(key), None, "{key}");
    }
}

#[test]
fn kubernetes_service_links_are_not_configuration() {
    // What the kubelet injects for Services `wd`, `wd-webhook-dispatcher` and `wd-redis`.
    let links = [
        ("WD_SERVICE_HOST", "10.0.0.7"),
        ("WD_SERVICE_PORT", "8080"),
        ("WD_SERVICE_PORT_HTTP", "8080"),
        ("WD_PORT", "tcp://10.0.0.7:8080"),
        ("WD_PORT_8080_TCP", "tcp://10.0.0.7:8080"),
        ("WD_PORT_8080_TCP_PROTO", "tcp"),
        ("WD_PORT_8080_TCP_PORT", "8080"),
        ("WD_PORT_8080_TCP_ADDR", "10.0.0.7"),
        ("WD_WEBHOOK_DISPATCHER_SERVICE_HOST", "10.0.0.1"),
        ("WD_WEBHOOK_DISPATCHER_SERVICE_PORT_METRICS", "9090"),
        ("WD_WEBHOOK_DISPATCHER_PORT", "tcp://10.0.0.1:8080"),
        ("WD_WEBHOOK_DISPATCHER_PORT_9090_TCP", "tcp://10.0.0.1:9090"),
        ("WD_WEBHOOK_DISPATCHER_PORT_9090_TCP_ADDR", "10.0.0.1"),
        ("WD_REDIS_SERVICE_HOST", "fd00::1"),
        ("WD_REDIS_PORT", "tcp://[fd00::1]:6379"),
        ("WD_REDIS_PORT_6379_UDP_PROTO", "udp"),
    ];
    let c = load(&links).unwrap();
    assert_eq!(c.redis.url.expose(), "redis://127.0.0.1:6379");
    // Shaped like a link but not valued like one, or a plain typo: refused, named.
    for typo in [
        ("WD_KAFKA_BROKER", "k:9092"),
        ("WD_REDIS_PORT", "6379"),
        ("WD_ADMIN_SERVICE_HOST", "not-an-ip"),
        ("WD_X_PORT_8080_TCP_ADDR", "tcp://10.0.0.1:1"),
    ] {
        let err = error_of(&[typo]);
        assert!(err.contains(typo.0), "{err}");
    }
}

#[test]
fn run_requires_brokers_and_token() {
    let c = load(&[("WD_ADMIN_TOKEN", "an-admin-token-16")]).unwrap();
    assert!(
        c.require_for_run()
            .unwrap_err()
            .to_string()
            .contains("WD_KAFKA_BROKERS")
    );
    let c = load(&[("WD_KAFKA_BROKERS", "k:1")]).unwrap();
    assert!(
        c.require_for_run()
            .unwrap_err()
            .to_string()
            .contains("WD_ADMIN_TOKEN")
    );
}

#[test]
fn a_config_file_layers_under_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wd.toml");
    std::fs::write(
        &path,
        "max_inflight = 9\ntrigger_topic = \"from-file\"\n[kafka]\nbrokers = \"f:1\"\n\
         [kafka.properties]\n\"fetch.min.bytes\" = 10\n",
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let c = load(&[("WD_CONFIG", path), ("WD_TRIGGER_TOPIC", "from-env")]).unwrap();
    assert_eq!(c.max_inflight, 9);
    assert_eq!(c.trigger_topic, "from-env");
    assert_eq!(c.kafka.brokers, "f:1");
    assert_eq!(c.kafka.properties["fetch.min.bytes"].value, "10");

    std::fs::write(dir.path().join("typo.toml"), "max_inflite = 9\n").unwrap();
    let typo = dir.path().join("typo.toml");
    let err = error_of(&[("WD_CONFIG", typo.to_str().unwrap())]);
    assert!(err.contains("max_inflite"), "{err}");

    std::fs::write(dir.path().join("float.toml"), "max_inflight = 1.5\n").unwrap();
    let float = dir.path().join("float.toml");
    // The environment wins, read as the default's type whatever the file put there.
    let c = load(&[("WD_CONFIG", float.to_str().unwrap()), ("WD_MAX_INFLIGHT", "7")]).unwrap();
    assert_eq!(c.max_inflight, 7);
    let err = error_of(&[("WD_CONFIG", float.to_str().unwrap())]);
    assert!(err.contains("max_inflight (WD_MAX_INFLIGHT)"), "{err}");

    std::fs::write(dir.path().join("type.toml"), "max_inflight = \"many\"\n").unwrap();
    let wrong = dir.path().join("type.toml");
    let err = error_of(&[("WD_CONFIG", wrong.to_str().unwrap())]);
    assert!(err.contains("max_inflight (WD_MAX_INFLIGHT)"), "{err}");
}

#[test]
fn only_the_redis_password_is_masked() {
    assert_eq!(
        fields::redis_url_masked("redis://app:hunter2@redis.internal:6380/2"),
        "redis://app:****@redis.internal:6380/2"
    );
    assert_eq!(
        fields::redis_url_masked("rediss://:hunter2@r:6379"),
        "rediss://:****@r:6379"
    );
    assert_eq!(
        fields::redis_url_masked("redis://127.0.0.1:6379"),
        "redis://127.0.0.1:6379"
    );
}

#[test]
fn destination_ca_file_must_hold_usable_certificates() {
    let missing = error_of(&[("WD_DESTINATION_CA_FILE", "/nonexistent/ca.pem")]);
    assert!(
        missing.contains("destination_ca_file (WD_DESTINATION_CA_FILE)")
            && missing.contains("cannot read /nonexistent/ca.pem"),
        "{missing}"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().to_str().unwrap();
    for (text, why) in [
        ("not a certificate\n", "holds no PEM certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "certificate 1 is not a usable CA",
        ),
    ] {
        std::fs::write(file.path(), text).unwrap();
        let err = error_of(&[("WD_DESTINATION_CA_FILE", path)]);
        assert!(
            err.contains("destination_ca_file (WD_DESTINATION_CA_FILE)") && err.contains(why),
            "{err}"
        );
    }
    assert!(load(&[]).unwrap().destination_ca_file.is_none());
}

#[test]
fn secrets_may_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    // As `kubectl create secret` and Docker secrets write them: often with a final newline.
    let token = write("admin-token", "a-token-of-at-least-16-chars\n");
    let redis = write("redis-url", "rediss://:p%40ss@redis.example:6380\r\n");
    let kafka = write("kafka", "sasl.username=wd,sasl.password=pa,ss");
    let config = load(&[
        ("WD_ADMIN_TOKEN_FILE", &token),
        ("WD_REDIS_URL_FILE", &redis),
        ("WD_KAFKA_PROPERTIES_FILE", &kafka),
    ])
    .unwrap();
    assert_eq!(
        config.admin_token.as_ref().map(Secret::expose),
        Some("a-token-of-at-least-16-chars")
    );
    assert_eq!(config.redis.url.expose(), "rediss://:p%40ss@redis.example:6380");
    assert_eq!(config.kafka.properties["sasl.password"].value, "pa,ss");
    // The file's rules are the variable's: a short token is refused, and never shown.
    let short = write("short", "change-me\n");
    let err = error_of(&[("WD_ADMIN_TOKEN_FILE", &short)]);
    assert!(err.contains("admin_token") && !err.contains("change-me"), "{err}");
    let both = error_of(&[
        ("WD_ADMIN_TOKEN_FILE", &token),
        ("WD_ADMIN_TOKEN", "x".repeat(20).as_str()),
    ]);
    assert!(
        both.contains("(WD_ADMIN_TOKEN_FILE)") && both.contains("not both"),
        "{both}"
    );
    let missing = error_of(&[("WD_SECRET_KEY_FILE", "/nonexistent/key")]);
    assert!(
        missing.contains("secret_key (WD_SECRET_KEY_FILE): cannot read /nonexistent/key"),
        "{missing}"
    );
    // Only secrets: another key's _FILE is an unknown variable, as before.
    assert!(error_of(&[("WD_DLQ_TOPIC_FILE", &token)]).contains("unknown variable"));
}

#[test]
fn redis_tls_files_need_a_tls_url_and_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let ca = self_signed();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.0).unwrap();
    let key_path = dir.path().join("client.key");
    std::fs::write(&key_path, &ca.1).unwrap();
    let (ca_path, key_path) = (ca_path.to_str().unwrap(), key_path.to_str().unwrap());
    let plain = error_of(&[("WD_REDIS_CA_FILE", ca_path)]);
    assert!(
        plain.contains("redis.ca_file (WD_REDIS_CA_FILE): needs a rediss://"),
        "{plain}"
    );
    let tls = [("WD_REDIS_URL", "rediss://redis.example:6380")];
    let alone = error_of(&[tls[0], ("WD_REDIS_CLIENT_CERT_FILE", ca_path)]);
    assert!(
        alone.contains("redis.client_key_file") && alone.contains("required"),
        "{alone}"
    );
    // A certificate where the key belongs is named, its content never shown.
    let swapped = error_of(&[
        tls[0],
        ("WD_REDIS_CLIENT_CERT_FILE", ca_path),
        ("WD_REDIS_CLIENT_KEY_FILE", ca_path),
    ]);
    assert!(
        swapped.contains("holds no PEM private key") && !swapped.contains("BEGIN"),
        "{swapped}"
    );
    let config = load(&[
        tls[0],
        ("WD_REDIS_CA_FILE", ca_path),
        ("WD_REDIS_CLIENT_CERT_FILE", ca_path),
        ("WD_REDIS_CLIENT_KEY_FILE", key_path),
    ])
    .unwrap();
    assert!(config.redis.client().is_ok());
    let printed = toml::to_string(&config).unwrap();
    assert!(
        printed.contains(&format!("client_key_file = \"{key_path}\"")),
        "{printed}"
    );
    assert!(!printed.contains("PRIVATE KEY") && !format!("{config:?}").contains("PRIVATE KEY"));
}

/// A self-signed certificate (usable as a CA file and as a client certificate) and its key.
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["test".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn cluster_mode_takes_seed_nodes_and_needs_a_hash_tag_in_the_prefix() {
    let seeds = (
        "WD_REDIS_URL",
        "redis://:pw@10.0.0.1:6379,redis://:pw@10.0.0.2:6379",
    );
    let several = error_of(&[seeds]);
    assert!(
        several.contains("redis.url (WD_REDIS_URL)") && several.contains("redis.cluster"),
        "{several}"
    );
    let untagged = error_of(&[seeds, ("WD_REDIS_CLUSTER", "true")]);
    assert!(
        untagged.contains("redis.prefix (WD_REDIS_PREFIX)") && untagged.contains("hash tag"),
        "{untagged}"
    );
    for empty in ["{}:", "webhook{:", "}webhook{"] {
        let error = error_of(&[seeds, ("WD_REDIS_CLUSTER", "true"), ("WD_REDIS_PREFIX", empty)]);
        assert!(error.contains("redis.prefix"), "{empty}: {error}");
    }
    let config = load(&[
        seeds,
        ("WD_REDIS_CLUSTER", "true"),
        ("WD_REDIS_PREFIX", "{webhook}:"),
    ])
    .unwrap();
    assert!(config.redis.cluster);
    let printed = toml::to_string(&config).unwrap();
    assert!(!printed.contains("pw@"), "each seed's password masked: {printed}");
    assert!(printed.contains("10.0.0.2:6379"), "{printed}");
    let bad = error_of(&[("WD_REDIS_URL", "redis://a:6379,http://b:6379")]);
    assert!(bad.contains("redis.url"), "{bad}");
}
