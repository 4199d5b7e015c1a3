//! The container image: the Dockerfile read line-wise into stages, and the
//! build context it is given.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use super::cli::Surface;
use super::{
    DOCKERFILE, DOCKERIGNORE, fail_on, listen_addr, on_temporary_sqlite, open, read, repo,
    shutdown_budget,
};

/// One instruction, its keyword upper-cased, continuation lines joined.
#[derive(Debug, Clone)]
pub struct Instruction {
    pub line: usize,
    pub keyword: String,
    pub rest: String,
}

/// The instructions from one `FROM` to the next.
#[derive(Debug, Default)]
pub struct Stage {
    pub from: String,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    pub fn all(&self, keyword: &str) -> impl Iterator<Item = &Instruction> {
        let keyword = keyword.to_owned();
        self.instructions
            .iter()
            .filter(move |instruction| instruction.keyword == keyword)
    }

    pub fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.all(keyword).last()
    }

    /// `ENV` pairs, in order (`ENV A=1 B=2`, or the old `ENV A 1`).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for instruction in self.all("ENV") {
            let rest = instruction.rest.trim();
            if !rest.split_whitespace().next().unwrap_or("").contains('=') {
                let (name, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                pairs.push((name.to_owned(), value.trim().to_owned()));
                continue;
            }
            for word in rest.split_whitespace() {
                let (name, value) = word
                    .split_once('=')
                    .unwrap_or_else(|| panic!("line {}: ENV {word}", instruction.line));
                pairs.push((name.to_owned(), value.trim_matches('"').to_owned()));
            }
        }
        pairs
    }
}

/// Splits `text` into stages; instructions before the first `FROM` (`ARG`)
/// are dropped.
pub fn stages(text: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut pending: Option<Instruction> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        // Docker skips comment lines, inside continuations too.
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_none()) {
            continue;
        }
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(body) => (body.trim_end(), true),
            None => (trimmed, false),
        };
        let instruction = match pending.take() {
            Some(mut instruction) => {
                instruction.rest.push(' ');
                instruction.rest.push_str(body);
                instruction
            }
            None => {
                let (keyword, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
                Instruction {
                    line: index + 1,
                    keyword: keyword.to_ascii_uppercase(),
                    rest: rest.trim().to_owned(),
                }
            }
        };
        if continues {
            pending = Some(instruction);
        } else if instruction.keyword == "FROM" {
            stages.push(Stage {
                from: instruction.rest,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(instruction);
        }
    }
    assert!(
        pending.is_none(),
        "the Dockerfile ends inside a continuation"
    );
    stages
}

/// How long `docker stop` waits after the stop signal before SIGKILL, when
/// not told otherwise; an image cannot change it.
const DOCKER_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether `image` names one build of an image for good: a digest
/// (`@sha256:` and 64 hex digits), or a tag that is an exact release
/// (`17.6`, `7.4.6`, `1.95.0-bookworm`), not a moving one (`17`, `latest`).
pub fn is_pinned(image: &str) -> bool {
    if let Some((_, digest)) = image.split_once("@sha256:") {
        return digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit());
    }
    let Some((_, tag)) = image
        .rsplit_once(':')
        .filter(|(name, _)| !name.ends_with('/'))
    else {
        return false;
    };
    let version = tag.split('-').next().unwrap_or_default();
    let numbers: Vec<&str> = version.split('.').collect();
    numbers.len() >= 2
        && numbers
            .iter()
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
}

#[test]
fn pinned_images_are_told_from_moving_ones() {
    let digest = "a".repeat(64);
    for pinned in [
        "postgres:17.6",
        "redis:7.4.6",
        "rust:1.95.0-bookworm",
        &format!("gcr.io/distroless/cc-debian12:nonroot@sha256:{digest}"),
    ] {
        assert!(is_pinned(pinned), "{pinned}");
    }
    for moving in [
        "postgres:17",
        "redis",
        "rust:latest",
        "gcr.io/distroless/cc-debian12:nonroot",
        "registry:5000/x",
        "x@sha256:abc",
    ] {
        assert!(!is_pinned(moving), "{moving}");
    }
}

/// The JSON array of an exec-form instruction (`["sessiond", "serve"]`).
pub fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text.trim())
        .unwrap_or_else(|err| panic!("`{text}` is not the exec (JSON array) form: {err}"))
}

#[test]
fn stages_instructions_and_env_are_read() {
    let stages = stages(
        "ARG X=1\nFROM a AS b\n# c\nRUN x \\\n  # inside\n  y\nFROM d\nENV A=1 \\\n B=\"2\"\nENV C 3 4\nCMD [\"e\"]\n",
    );
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].from, "a AS b");
    assert_eq!(stages[0].instructions[0].rest, "x y");
    assert_eq!(
        stages[1].env(),
        [("A", "1"), ("B", "2"), ("C", "3 4")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(exec_form(&stages[1].last("CMD").unwrap().rest), ["e"]);
}

/// The oldest Rust that builds `sessiond` with the locked dependencies: the
/// workspace's rust-version, or a newer one that a dependency needs.
fn required_rust() -> (u64, u64) {
    fn version(text: &str) -> (u64, u64) {
        let mut parts = text.split('.').map(|part| part.parse::<u64>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap_or(0))
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo())
        .args([
            "metadata",
            "--format-version=1",
            "--locked",
            "--offline",
            "--filter-platform=x86_64-unknown-linux-gnu",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rust_versions: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|package| Some((package["id"].as_str()?, package["rust_version"].as_str()?)))
        .collect();
    let nodes: BTreeMap<&str, &serde_json::Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| (node["id"].as_str().unwrap(), node))
        .collect();
    let root = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|package| package["name"] == "sessiond")
        .unwrap()["id"]
        .as_str()
        .unwrap();
    // What a release build of the binary compiles: normal and build
    // dependencies, not dev-dependencies.
    let mut seen = BTreeSet::from([root]);
    let mut pending = vec![root];
    let mut required = (0, 0);
    while let Some(id) = pending.pop() {
        if let Some(rust) = rust_versions.get(id) {
            required = required.max(version(rust));
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let built = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|kind| kind["kind"].is_null() || kind["kind"] == "build");
            let dep_id = dep["pkg"].as_str().unwrap();
            if built && seen.insert(dep_id) {
                pending.push(dep_id);
            }
        }
    }
    assert!(required >= (1, 0), "no rust-version found");
    required
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_as_non_root() {
    let surface = Surface::read();
    let text = read(DOCKERFILE);
    assert!(
        text.lines()
            .any(|line| line.contains("docker build -f deploy/Dockerfile") && line.ends_with(" .")),
        "{DOCKERFILE} should say how it is built from the repository root"
    );
    let stages = stages(&text);
    assert!(
        stages.len() >= 2,
        "{DOCKERFILE}: build and runtime stages expected"
    );

    let build = &stages[0];
    let tag = build
        .from
        .split_whitespace()
        .next()
        .unwrap()
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("the build stage should use the rust image: {}", build.from));
    let mut numbers = tag
        .split('-')
        .next()
        .unwrap()
        .split('.')
        .map(|part| part.parse::<u64>().unwrap());
    let image_rust = (numbers.next().unwrap(), numbers.next().unwrap());
    let required = required_rust();
    assert!(
        image_rust >= required,
        "FROM rust:{tag}: the locked dependencies need Rust {}.{}",
        required.0,
        required.1
    );
    assert!(
        build.all("RUN").any(|run| run
            .rest
            .contains("cargo build --release --locked -p sessiond")),
        "the build stage should run `cargo build --release --locked -p sessiond`"
    );

    // Every base image pinned; `scratch` and earlier stages are no image.
    let mut names = vec!["scratch".to_owned()];
    for stage in &stages {
        let mut words = stage.from.split_whitespace();
        let image = words.next().unwrap();
        assert!(
            names.iter().any(|name| name == image) || is_pinned(image),
            "{DOCKERFILE}: FROM {image}: pin it by digest (@sha256:…) or at least an exact version tag, so that a rebuild gets the image that was reviewed"
        );
        if let (Some(keyword), Some(name)) = (words.next(), words.next()) {
            assert!(keyword.eq_ignore_ascii_case("AS"), "FROM {}", stage.from);
            names.push(name.to_owned());
        }
    }
    for image in ["rust:", "gcr.io/distroless/"] {
        assert!(
            stages
                .iter()
                .any(|stage| stage.from.starts_with(image) && stage.from.contains("@sha256:")),
            "{DOCKERFILE}: the {image} base is no longer pinned by digest"
        );
    }

    // The binary is shipped without its debug line tables, which are kept
    // in a stage of their own.
    let build_script: String = build.all("RUN").map(|run| run.rest.as_str()).collect();
    for step in [
        "objcopy --only-keep-debug",
        "objcopy --strip-debug",
        "--add-gnu-debuglink",
    ] {
        assert!(
            build_script.contains(step),
            "{DOCKERFILE}: the build stage should strip the binary, keeping its symbols apart (`{step}`)"
        );
    }
    let symbols = stages
        .iter()
        .find(|stage| stage.from.ends_with(" AS symbols"))
        .expect("a `symbols` stage with the debug file");
    assert!(
        symbols.all("COPY").any(|copy| copy.rest.contains(".debug")),
        "{DOCKERFILE}: the symbols stage should hold the debug file"
    );

    let runtime = stages.last().unwrap();
    assert!(
        runtime
            .all("COPY")
            .all(|copy| !copy.rest.contains("symbols")),
        "{DOCKERFILE}: the symbols do not belong in the image"
    );
    let user = &runtime
        .last("USER")
        .expect("the final stage sets no USER")
        .rest;
    for id in user.split(':') {
        let number: u32 = id
            .parse()
            .unwrap_or_else(|_| panic!("USER {user}: use numbers, which runAsNonRoot can check"));
        assert_ne!(number, 0, "USER {user} is root");
    }

    let env: BTreeMap<String, String> = runtime.env().into_iter().collect();
    fail_on(
        env.iter()
            .filter_map(|(name, value)| surface.check_value(name, value).err())
            .collect(),
    );
    // No secret and no way around authentication baked into the image.
    for name in [
        "SESSIOND_TOKEN",
        "SESSIOND_SECRET_KEY",
        "SESSIOND_INSECURE_ALLOW_UNAUTHENTICATED",
    ] {
        assert!(!env.contains_key(name), "{DOCKERFILE} sets {name}");
    }
    let volumes = exec_form(&runtime.last("VOLUME").unwrap().rest);
    let store = &env["SESSIOND_STORE"];
    assert!(
        volumes
            .iter()
            .any(|volume| store.starts_with(&format!("sqlite://{volume}/"))),
        "SESSIOND_STORE={store} is not on a VOLUME ({volumes:?})"
    );
    let listen = listen_addr(&env["SESSIOND_LISTEN"], DOCKERFILE);
    let exposed: Vec<&str> = runtime
        .all("EXPOSE")
        .flat_map(|expose| expose.rest.split_whitespace())
        .collect();
    assert!(
        exposed.contains(&listen.port().to_string().as_str()),
        "EXPOSE {exposed:?} lacks the port of SESSIOND_LISTEN={listen}"
    );

    let healthcheck = &runtime.last("HEALTHCHECK").unwrap().rest;
    let (_, command) = healthcheck
        .split_once("CMD ")
        .expect("HEALTHCHECK should run a command");
    let command = exec_form(command);
    assert_eq!(command[..2], ["sessiond", "healthcheck"]);
    assert_eq!(runtime.last("STOPSIGNAL").unwrap().rest, "SIGTERM");
    // A plain `docker stop` must not kill the server in the middle of its
    // drain.
    let budget = shutdown_budget(&surface, &env);
    assert!(
        budget < DOCKER_STOP_TIMEOUT,
        "{DOCKERFILE}: SESSIOND_SHUTDOWN_DELAY + SESSIOND_DRAIN_TIMEOUT ({budget:?}) should end within docker's default stop timeout ({DOCKER_STOP_TIMEOUT:?})"
    );
    for documented in [
        "--stop-timeout",
        "stop_grace_period",
        "terminationGracePeriodSeconds",
    ] {
        assert!(
            text.contains(documented),
            "{DOCKERFILE}: say how to give a longer drain more time ({documented})"
        );
    }
    let mut argv = exec_form(&runtime.last("ENTRYPOINT").unwrap().rest);
    argv.extend(exec_form(&runtime.last("CMD").unwrap().rest));
    assert_eq!(argv[..2], ["sessiond", "serve"]);
}

#[tokio::test]
async fn the_image_refuses_to_serve_until_given_a_token() {
    let surface = Surface::read();
    let runtime = stages(&read(DOCKERFILE)).pop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = on_temporary_sqlite(&runtime.env().into_iter().collect(), dir.path());
    let listen = listen_addr(&env["SESSIOND_LISTEN"], DOCKERFILE);
    assert!(!listen.ip().is_loopback());

    let refused = open(&surface, &env)
        .await
        .err()
        .unwrap_or_else(|| panic!("the image's defaults serve {listen} to anyone"));
    for named in ["SESSIOND_TOKEN", "--tokens-file", "--tls-cert"] {
        assert!(
            refused.contains(named),
            "the refusal does not name {named}: {refused}"
        );
    }
    env.insert("SESSIOND_TOKEN".into(), "a-token-for-this-test-only".into());
    open(&surface, &env).await.unwrap();
}

#[test]
fn the_build_context_keeps_what_cargo_needs() {
    let patterns: Vec<String> = read(DOCKERIGNORE)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.trim_start_matches("**/")
                .trim_start_matches('/')
                .trim_end_matches('/')
                .to_owned()
        })
        .collect();
    for excluded in ["target", ".git"] {
        assert!(
            patterns.iter().any(|pattern| pattern == excluded),
            "{DOCKERIGNORE} should exclude {excluded}"
        );
    }
    let needed = [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "server",
        "client",
        "signing",
        "bench",
        "proto",
        "migrations",
    ];
    for pattern in &patterns {
        assert!(
            !needed.contains(&pattern.as_str()) && pattern != "*" && pattern != "**",
            "{DOCKERIGNORE}: {pattern} keeps a build input out of the context"
        );
    }
    let members = read("Cargo.toml");
    for member in ["server", "client", "signing", "bench"] {
        assert!(members.contains(&format!("\"{member}\"")));
    }
}
