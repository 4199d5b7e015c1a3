//! The compose file for local trials.

use std::collections::BTreeMap;

use super::cli::{self, Surface};
use super::image::is_pinned;
use super::kube;
use super::{COMPOSE, DOCKERFILE, fail_on, read, repo, shutdown_budget};

/// Compose's `${NAME:-default}`, with the default.
fn with_defaults(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let inner = &rest[start + 2..end];
        let (_, default) = inner
            .split_once(":-")
            .unwrap_or_else(|| panic!("${{{inner}}} has no default"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn runs_sessiond_on_postgres_with_a_redis_cache() {
    let surface = Surface::read();
    let docs = kube::load(COMPOSE, &read(COMPOSE));
    let [compose] = &docs[..] else {
        panic!("{COMPOSE}: one document expected");
    };
    let services = &compose["services"];
    let sessiond = &services["sessiond"];

    let build = &sessiond["build"];
    let context = repo()
        .join("deploy")
        .join(kube::string(&build["context"], "context"));
    assert_eq!(
        context.canonicalize().unwrap(),
        repo().canonicalize().unwrap(),
        "{COMPOSE}: the build context should be the repository root"
    );
    assert_eq!(kube::string(&build["dockerfile"], "dockerfile"), DOCKERFILE);

    let env: BTreeMap<String, String> = kube::string_map(&sessiond["environment"], "environment")
        .into_iter()
        .map(|(name, value)| (name, with_defaults(&value)))
        .collect();
    let mut problems = Vec::new();
    for (name, value) in &env {
        if let Err(err) = surface.check_value(name, value) {
            problems.push(format!("{COMPOSE}: {err}"));
        }
    }
    fail_on(problems);
    assert!(env["SESSIOND_STORE"].starts_with("postgres://"));
    assert!(env["SESSIOND_CACHE"].starts_with("redis://"));
    // The development token must be one sessiond accepts.
    sessiond::auth::Tokens::load(None, Some(env["SESSIOND_TOKEN"].as_str())).unwrap();
    let raw = kube::string_map(&sessiond["environment"], "environment");
    assert!(
        raw["SESSIOND_TOKEN"].starts_with("${SESSIOND_TOKEN:-"),
        "{COMPOSE}: the token should come from the environment"
    );

    // Each URL names a service of this file, which sessiond waits for.
    for (var, service) in [("SESSIOND_STORE", "postgres"), ("SESSIOND_CACHE", "redis")] {
        let url = url::Url::parse(&env[var]).unwrap();
        assert_eq!(url.host_str(), Some(service), "{var}");
        assert!(
            !services[service]["healthcheck"]["test"].is_badvalue(),
            "{COMPOSE}: {service} has no healthcheck to wait for"
        );
        assert_eq!(
            sessiond["depends_on"][service]["condition"].as_str(),
            Some("service_healthy"),
            "{COMPOSE}: sessiond should wait until {service} is healthy"
        );
    }

    for port in kube::list(&sessiond["ports"], "ports") {
        let port = kube::string(port, "ports");
        assert!(
            port.starts_with("127.0.0.1:"),
            "{COMPOSE}: {port} publishes beyond the host's loopback"
        );
    }
    // Every `up` runs the same servers.
    for (name, service) in services.as_hash().unwrap() {
        if let Some(image) = service["image"].as_str()
            && service["build"].is_badvalue()
        {
            assert!(
                is_pinned(image),
                "{COMPOSE}: {} runs {image}: pin an exact version (postgres:17.6, redis:7.4.6) or a digest",
                name.as_str().unwrap_or_default()
            );
        }
    }

    let grace = cli::parse_seconds(kube::string(
        &sessiond["stop_grace_period"],
        "stop_grace_period",
    ))
    .unwrap();
    let budget = shutdown_budget(&surface, &env);
    assert!(
        grace > budget,
        "{COMPOSE}: stop_grace_period ({grace:?}) must exceed SESSIOND_SHUTDOWN_DELAY + SESSIOND_DRAIN_TIMEOUT ({budget:?})"
    );
}
