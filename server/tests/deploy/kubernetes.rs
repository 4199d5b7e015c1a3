//! The Kubernetes manifests: a sidecar on loopback and SQLite, and a shared
//! service of replicas on PostgreSQL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sessiond::proto::session_service_server::SERVICE_NAME;
use yaml_rust2::Yaml;

use super::cli::Surface;
use super::kube::{self, EnvSource};
use super::{
    SHARED, SIDECAR, fail_on, listen_addr, on_temporary_sqlite, open, read, shutdown_budget,
};

/// Checks a sessiond container against its pod; returns its listen address
/// and its literal environment.
fn check_sessiond_container(
    surface: &Surface,
    file: &str,
    pod: &Yaml,
    container: &Yaml,
) -> (SocketAddr, BTreeMap<String, String>) {
    let who = format!("{file}: container {}", kube::name(container));
    let command = kube::strings(&container["command"], "command");
    assert_eq!(command[..2], ["sessiond", "serve"], "{who}");

    let env = kube::env(container);
    for (name, _) in &env {
        assert!(surface.reads(name), "{who}: sessiond does not read {name}");
    }
    let values = kube::env_values(&env);
    fail_on(
        values
            .iter()
            .filter_map(|(name, value)| surface.check_value(name, value).err())
            .map(|err| format!("{who}: {err}"))
            .collect(),
    );

    let listen = listen_addr(&values["SESSIOND_LISTEN"], &who);
    assert_eq!(
        kube::port(container, "grpc"),
        Some(i64::from(listen.port())),
        "{who}: the port named grpc should be the port of SESSIOND_LISTEN"
    );

    let probes = kube::probes(container);
    for kind in ["readinessProbe", "livenessProbe"] {
        assert!(
            probes.iter().any(|(found, _)| *found == kind),
            "{who}: no {kind}"
        );
    }
    for (kind, probe) in &probes {
        let grpc = &probe["grpc"]["port"];
        if listen.ip().is_loopback() {
            // The kubelet probes the pod's IP, which a loopback listener
            // never answers.
            let exec = kube::strings(&probe["exec"]["command"], kind);
            assert_eq!(exec[..2], ["sessiond", "healthcheck"], "{who}: {kind}");
        } else if !grpc.is_badvalue() {
            assert_eq!(
                kube::integer(grpc, kind),
                i64::from(listen.port()),
                "{who}: {kind} should probe the gRPC port"
            );
        } else {
            let exec = kube::strings(&probe["exec"]["command"], kind);
            assert_eq!(exec[..2], ["sessiond", "healthcheck"], "{who}: {kind}");
        }
    }
    // Readiness follows the store (the session service's health); liveness
    // and startup the process (the overall status), or a store outage
    // would restart every pod.
    for (kind, probe) in &probes {
        let service = probed_service(probe, kind);
        let expected = if *kind == "readinessProbe" {
            SERVICE_NAME
        } else {
            ""
        };
        assert_eq!(
            service, expected,
            "{who}: {kind} should ask for the service {expected:?}"
        );
    }
    let readiness = &container["readinessProbe"];
    let timeout = readiness["timeoutSeconds"].as_i64().unwrap_or(1);
    let threshold = readiness["failureThreshold"].as_i64().unwrap_or(3);
    assert!(
        (2..=3).contains(&timeout),
        "{who}: readinessProbe timeoutSeconds {timeout}: 2 or 3 s leave a busy server time to answer without hiding one that hangs"
    );
    assert!(
        (2..=3).contains(&threshold),
        "{who}: readinessProbe failureThreshold {threshold}: 2 or 3 ride out one slow answer without keeping calls going to a store that is down"
    );
    if let Some(exec) = readiness["exec"]["command"].as_vec() {
        let words: Vec<&str> = exec.iter().filter_map(Yaml::as_str).collect();
        let mut given = BTreeMap::new();
        if let Some(at) = words.iter().position(|word| *word == "--timeout") {
            given.insert(
                "SESSIOND_HEALTHCHECK_TIMEOUT".to_owned(),
                words[at + 1].to_owned(),
            );
        }
        let own = surface.duration(&given, "SESSIOND_HEALTHCHECK_TIMEOUT");
        assert!(
            own < Duration::from_secs(u64::try_from(timeout).unwrap()),
            "{who}: healthcheck --timeout ({own:?}) should end before the readinessProbe's timeoutSeconds, so that it says why"
        );
    }

    // Health turns NOT_SERVING for the shutdown delay: liveness must not
    // kill the pod for it.
    let liveness = &container["livenessProbe"];
    let period = liveness["periodSeconds"].as_i64().unwrap_or(10);
    let failures = liveness["failureThreshold"].as_i64().unwrap_or(3);
    let tolerated = Duration::from_secs(u64::try_from(period * failures).unwrap());
    let delay = surface.duration(&values, "SESSIOND_SHUTDOWN_DELAY");
    assert!(
        tolerated > delay,
        "{who}: the liveness probe gives up after {tolerated:?}, within the shutdown delay {delay:?}"
    );

    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    let grace = Duration::from_secs(u64::try_from(grace).unwrap());
    let budget = shutdown_budget(surface, &values);
    assert!(
        grace > budget,
        "{file}: terminationGracePeriodSeconds ({grace:?}) must exceed SESSIOND_SHUTDOWN_DELAY + SESSIOND_DRAIN_TIMEOUT ({budget:?})"
    );

    let resources = &container["resources"];
    for field in [
        &resources["requests"]["cpu"],
        &resources["requests"]["memory"],
        &resources["limits"]["memory"],
    ] {
        assert!(
            !field.is_badvalue(),
            "{who}: resources need CPU and memory requests and a memory limit"
        );
    }

    if let Some(metrics) = values.get("SESSIOND_METRICS_LISTEN") {
        let port = listen_addr(metrics, &who).port();
        assert_eq!(
            kube::port(container, "metrics"),
            Some(i64::from(port)),
            "{who}"
        );
    }
    (listen, values)
}

/// The service a probe asks about: a gRPC probe's `service`, or the
/// `--service` of `sessiond healthcheck`; `""` (the server as a whole)
/// when it names none.
fn probed_service(probe: &Yaml, kind: &str) -> String {
    if !probe["grpc"].is_badvalue() {
        return probe["grpc"]["service"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    let exec = kube::strings(&probe["exec"]["command"], kind);
    let mut words = exec.iter();
    while let Some(word) = words.next() {
        if word == "--service" {
            return words.next().cloned().unwrap_or_default();
        }
        if let Some(value) = word.strip_prefix("--service=") {
            return value.to_owned();
        }
    }
    String::new()
}

/// Every container runs as non-root, unprivileged, on a read-only root.
fn check_locked_down(file: &str, pod: &Yaml) {
    for container in kube::containers(pod) {
        let who = format!("{file}: container {}", kube::name(container));
        assert_eq!(
            kube::security(pod, container, "runAsNonRoot").as_bool(),
            Some(true),
            "{who}: runAsNonRoot"
        );
        let user = kube::security(pod, container, "runAsUser");
        assert!(
            user.is_badvalue() || user.as_i64() > Some(0),
            "{who}: runAsUser 0"
        );
        let own = &container["securityContext"];
        assert_eq!(
            own["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{who}"
        );
        assert_eq!(own["readOnlyRootFilesystem"].as_bool(), Some(true), "{who}");
        let dropped = kube::strings(&own["capabilities"]["drop"], "capabilities.drop");
        assert!(dropped.iter().any(|cap| cap == "ALL"), "{who}: drop ALL");
    }
}

/// A Deployment's pod spec, after checking that it selects its own pods.
fn pod_of<'a>(file: &str, deployment: &'a Yaml) -> (&'a Yaml, BTreeMap<String, String>) {
    assert_eq!(
        kube::string(&deployment["apiVersion"], "apiVersion"),
        "apps/v1"
    );
    let template = &deployment["spec"]["template"];
    let labels = kube::string_map(&template["metadata"]["labels"], "template labels");
    let selector = kube::string_map(&deployment["spec"]["selector"]["matchLabels"], "selector");
    assert!(
        kube::selects(&selector, &labels),
        "{file}: the Deployment's selector does not match its pod labels"
    );
    (&template["spec"], labels)
}

fn kinds(docs: &[Yaml]) -> Vec<&str> {
    docs.iter()
        .map(|doc| kube::string(&doc["kind"], "kind"))
        .collect()
}

#[tokio::test]
async fn the_sidecar_serves_loopback_on_a_pod_volume() {
    let surface = Surface::read();
    let docs = kube::load(SIDECAR, &read(SIDECAR));
    assert_eq!(kinds(&docs), ["Deployment"]);
    let (pod, _) = pod_of(SIDECAR, &docs[0]);
    check_locked_down(SIDECAR, pod);

    let containers = kube::containers(pod);
    let sessiond: Vec<&Yaml> = containers
        .iter()
        .copied()
        .filter(|container| kube::runs_sessiond(container))
        .collect();
    assert_eq!(
        sessiond.len(),
        1,
        "{SIDECAR}: one sessiond container expected"
    );
    let (listen, values) = check_sessiond_container(&surface, SIDECAR, pod, sessiond[0]);
    assert!(
        listen.ip().is_loopback(),
        "{SIDECAR}: a sidecar listens on loopback, where it needs no token"
    );

    let store = &values["SESSIOND_STORE"];
    let file = store
        .strip_prefix("sqlite://")
        .unwrap_or_else(|| panic!("{SIDECAR}: SESSIOND_STORE={store} is not SQLite"));
    let dir = Path::new(file).parent().unwrap().to_string_lossy();
    let volume = kube::volume_at(pod, sessiond[0], &dir)
        .unwrap_or_else(|| panic!("{SIDECAR}: nothing is mounted at {dir}, on a read-only root"));
    assert!(
        !volume["emptyDir"].is_badvalue() || !volume["persistentVolumeClaim"].is_badvalue(),
        "{SIDECAR}: {dir} should be an emptyDir or a PersistentVolumeClaim"
    );

    // The app reaches sessiond where it listens.
    let apps: Vec<&Yaml> = containers
        .iter()
        .copied()
        .filter(|container| !kube::runs_sessiond(container))
        .collect();
    assert!(!apps.is_empty(), "{SIDECAR}: no app container");
    for app in apps {
        let values = kube::env_values(&kube::env(app));
        let address = values
            .get("SESSIOND_ADDRESS")
            .unwrap_or_else(|| panic!("{SIDECAR}: the app is not told SESSIOND_ADDRESS"));
        assert_eq!(listen_addr(address, SIDECAR), listen, "SESSIOND_ADDRESS");
    }

    let dir = tempfile::tempdir().unwrap();
    open(&surface, &on_temporary_sqlite(&values, dir.path()))
        .await
        .unwrap();
}

/// The `kubectl create secret generic` command of a manifest's header
/// comment: the Secret's name and the keys it creates (`--from-file=KEY=…`,
/// `--from-literal=KEY=…`).
fn secret_recipe(text: &str) -> Option<(String, Vec<String>)> {
    let lines: Vec<&str> = text
        .lines()
        .map(|line| line.trim_start_matches('#').trim())
        .collect();
    let start = lines
        .iter()
        .position(|line| line.contains("kubectl create secret generic "))?;
    let mut command = String::new();
    for line in &lines[start..] {
        command.push_str(line.trim_end_matches('\\'));
        command.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    let mut words = command
        .split_once("kubectl create secret generic ")?
        .1
        .split_whitespace();
    let name = words.next()?.to_owned();
    let keys = words
        .filter_map(|word| {
            word.strip_prefix("--from-file=")
                .or_else(|| word.strip_prefix("--from-literal="))
        })
        .map(|source| source.split('=').next().unwrap_or_default().to_owned())
        .collect();
    Some((name, keys))
}

#[test]
fn the_secret_recipe_is_read() {
    let text = "# a\n#   kubectl create secret generic s \\\n#     --from-file=a=./x --from-literal=b='c=d'\n# e --from-file=f=g\n";
    assert_eq!(
        secret_recipe(text),
        Some(("s".to_owned(), vec!["a".to_owned(), "b".to_owned()]))
    );
}

/// A NetworkPolicy rule's ports, by number: named ports are the
/// container's.
fn policy_ports(rule: &Yaml, container: &Yaml) -> Vec<(String, i64)> {
    kube::list(&rule["ports"], "NetworkPolicy ports")
        .iter()
        .map(|port| {
            let protocol = port["protocol"].as_str().unwrap_or("TCP").to_owned();
            let number = match port["port"].as_str() {
                Some(name) => kube::port(container, name)
                    .unwrap_or_else(|| panic!("{SHARED}: no container port named {name}")),
                None => kube::integer(&port["port"], "NetworkPolicy port"),
            };
            (protocol, number)
        })
        .collect()
}

#[tokio::test]
async fn the_shared_service_balances_tokened_replicas_on_postgres() {
    let surface = Surface::read();
    let text = read(SHARED);
    let docs = kube::load(SHARED, &text);
    let mut found = kinds(&docs);
    found.sort_unstable();
    // No Secret: a placeholder in this file would replace the real one on
    // every `kubectl apply`.
    assert_eq!(
        found,
        [
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "Service"
        ]
    );
    let of_kind = |kind: &'static str| {
        docs.iter()
            .filter(move |doc| doc["kind"].as_str() == Some(kind))
    };

    let deployment = of_kind("Deployment").next().unwrap();
    assert_eq!(
        kube::integer(&deployment["spec"]["replicas"], "replicas"),
        3
    );
    let (pod, labels) = pod_of(SHARED, deployment);
    check_locked_down(SHARED, pod);
    let containers = kube::containers(pod);
    let [container] = containers[..] else {
        panic!("{SHARED}: one container expected");
    };
    let (listen, values) = check_sessiond_container(&surface, SHARED, pod, container);
    assert!(
        listen.ip().is_unspecified(),
        "{SHARED}: should listen on every address"
    );
    assert!(
        surface.duration(&values, "SESSIOND_SHUTDOWN_DELAY") > Duration::ZERO,
        "{SHARED}: without a shutdown delay the Service still sends calls to a closed listener"
    );

    // The store URL and the tokens come from the Secret that the header's
    // `kubectl create secret` makes, with every key they read.
    let (secret_name, created) = secret_recipe(&text).unwrap_or_else(|| {
        panic!("{SHARED}: the header should say how to create the Secret (`kubectl create secret generic`)")
    });
    let readme = read("README.md");
    assert!(
        readme.contains(&format!("kubectl create secret generic {secret_name}")),
        "README.md should say how to create the Secret {secret_name}"
    );
    let env = kube::env(container);
    let from_secret = |var: &str| {
        env.iter().find_map(|(name, source)| match source {
            EnvSource::Secret { name: secret, key } if name == var => Some((secret, key)),
            _ => None,
        })
    };
    let (name, key) = from_secret("SESSIOND_STORE").expect("SESSIOND_STORE from the Secret");
    assert_eq!(*name, secret_name);
    assert!(
        created.contains(key),
        "{SHARED}: the Secret is created without the key {key} (SESSIOND_STORE)"
    );
    let store = text
        .split("'postgres://")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .map(|rest| format!("postgres://{rest}"))
        .unwrap_or_else(|| panic!("{SHARED}: the header shows no PostgreSQL URL for the Secret"));
    surface.check_value("SESSIOND_STORE", &store).unwrap();
    let store_port = i64::from(url::Url::parse(&store).unwrap().port().unwrap_or(5432));

    let tokens_file = Path::new(&values["SESSIOND_TOKENS_FILE"]);
    let mount = tokens_file.parent().unwrap().to_string_lossy();
    let volume = kube::volume_at(pod, container, &mount)
        .unwrap_or_else(|| panic!("{SHARED}: nothing mounted at {mount}"));
    assert_eq!(
        kube::string(&volume["secret"]["secretName"], "secretName"),
        secret_name
    );
    let file_name = tokens_file.file_name().unwrap().to_string_lossy();
    let item = kube::list(&volume["secret"]["items"], "items")
        .iter()
        .find(|item| item["path"].as_str() == Some(&file_name))
        .unwrap_or_else(|| panic!("{SHARED}: the Secret volume has no {file_name}"));
    let tokens_key = kube::string(&item["key"], "item key");
    assert!(
        created.iter().any(|key| key == tokens_key),
        "{SHARED}: the Secret is created without the key {tokens_key} (the tokens file)"
    );
    let mode = volume["secret"]["defaultMode"].as_i64().unwrap_or(0o644);
    assert_eq!(
        mode & 0o004,
        0,
        "{SHARED}: the tokens file is readable by everyone"
    );

    // Prometheus finds the metrics port.
    let annotations = kube::string_map(
        &deployment["spec"]["template"]["metadata"]["annotations"],
        "annotations",
    );
    let metrics = listen_addr(&values["SESSIOND_METRICS_LISTEN"], SHARED);
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        metrics.port().to_string()
    );

    for service in of_kind("Service") {
        let service_name = kube::string(&service["metadata"]["name"], "Service name");
        let selector = kube::string_map(&service["spec"]["selector"], "Service selector");
        assert!(
            kube::selects(&selector, &labels),
            "{SHARED}: Service {service_name} does not select the pods"
        );
        for port in kube::list(&service["spec"]["ports"], "ports") {
            let target = &port["targetPort"];
            let target = match target.as_str() {
                Some(port_name) => kube::port(container, port_name)
                    .unwrap_or_else(|| panic!("{service_name}: no container port {port_name}")),
                None => kube::integer(target, "targetPort"),
            };
            assert_eq!(target, i64::from(listen.port()), "Service {service_name}");
        }
    }
    let budget = of_kind("PodDisruptionBudget").next().unwrap();
    assert_eq!(
        kube::string(&budget["apiVersion"], "apiVersion"),
        "policy/v1"
    );
    let selector = kube::string_map(&budget["spec"]["selector"]["matchLabels"], "PDB selector");
    assert!(
        kube::selects(&selector, &labels),
        "{SHARED}: the PodDisruptionBudget does not select the pods"
    );
    let min_available = kube::integer(&budget["spec"]["minAvailable"], "minAvailable");
    assert!(
        (1..3).contains(&min_available),
        "{SHARED}: minAvailable {min_available} of 3 either protects nothing or blocks every drain"
    );

    // gRPC from the labelled app pods, metrics from the monitoring
    // namespace, out to PostgreSQL and DNS: each on the port the container
    // listens on.
    let policy = of_kind("NetworkPolicy").next().unwrap();
    assert_eq!(
        kube::string(&policy["apiVersion"], "apiVersion"),
        "networking.k8s.io/v1"
    );
    let spec = &policy["spec"];
    let selector = kube::string_map(&spec["podSelector"]["matchLabels"], "podSelector");
    assert!(
        kube::selects(&selector, &labels),
        "{SHARED}: the NetworkPolicy does not select the pods"
    );
    let types = kube::strings(&spec["policyTypes"], "policyTypes");
    assert!(
        types.iter().any(|t| t == "Ingress") && types.iter().any(|t| t == "Egress"),
        "{SHARED}: the NetworkPolicy should restrict ingress and egress, not {types:?}"
    );
    let grpc_port = i64::from(listen.port());
    let metrics_port = i64::from(metrics.port());
    let mut ingress_ports = Vec::new();
    for rule in kube::list(&spec["ingress"], "ingress") {
        let ports = policy_ports(rule, container);
        let peers = kube::list(&rule["from"], "ingress from");
        assert!(
            !peers.is_empty(),
            "{SHARED}: an ingress rule without `from` lets everyone in"
        );
        for (protocol, port) in &ports {
            assert_eq!(protocol, "TCP", "{SHARED}: ingress port {port}");
            let expected = if *port == grpc_port {
                ("podSelector", "sessiond-client", "true")
            } else if *port == metrics_port {
                (
                    "namespaceSelector",
                    "kubernetes.io/metadata.name",
                    "monitoring",
                )
            } else {
                panic!(
                    "{SHARED}: the NetworkPolicy opens port {port}, which sessiond does not listen on"
                )
            };
            let (selector_kind, label, value) = expected;
            for peer in peers {
                let peer_labels =
                    kube::string_map(&peer[selector_kind]["matchLabels"], selector_kind);
                assert_eq!(
                    peer_labels.get(label).map(String::as_str),
                    Some(value),
                    "{SHARED}: port {port} should be open to {selector_kind} {label}={value} only"
                );
            }
            assert!(
                text.contains(label) && text.contains(value),
                "{SHARED}: the comments should say who {label}={value} lets in"
            );
        }
        ingress_ports.extend(ports.into_iter().map(|(_, port)| port));
    }
    ingress_ports.sort_unstable();
    assert_eq!(
        ingress_ports,
        [metrics_port.min(grpc_port), metrics_port.max(grpc_port)],
        "{SHARED}: the NetworkPolicy should let in the gRPC and the metrics ports, once each"
    );
    let egress: Vec<(String, i64)> = kube::list(&spec["egress"], "egress")
        .iter()
        .flat_map(|rule| policy_ports(rule, container))
        .collect();
    for needed in [("TCP", store_port), ("UDP", 53), ("TCP", 53)] {
        assert!(
            egress
                .iter()
                .any(|(protocol, port)| (protocol.as_str(), *port) == needed),
            "{SHARED}: the NetworkPolicy blocks {needed:?}, which sessiond needs (PostgreSQL, DNS)"
        );
    }
    assert_eq!(
        egress.len(),
        3,
        "{SHARED}: egress beyond PostgreSQL and DNS: {egress:?}"
    );
}
