//! One login, four frameworks: a Django site logs a user in, and an Express
//! site, a Flask site and an axum site see the same user on the same
//! `sessionid` cookie, read each other's writes, write concurrently without
//! losing any, and all see the user logged out after Express flushes.
//!
//! Everything is real: the built sessiond on an SQLite file with
//! `--codec django`, Django and Flask from a virtualenv built from PyPI and
//! served over HTTP, the npm package's Express middleware in Node.js, and
//! sessiond-client's axum layer. The sites are in `tests/shared_login/`;
//! each answers `GET /session`, `POST /session/<name>` and `POST /logout`.
//! Without Python, PyPI, Node.js or npm the test prints `SKIPPED:` and
//! passes, except under `CI=true`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::routing::{get, post};
use common::process::{Running, sessiond};
use common::{node, python};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use sessiond_client::{Backend, Client, Session, SessionError, SessionLayer, Settings};

/// Django's `SECRET_KEY`, which sessiond signs `session_data` with
/// (`--codec django`) and Django signs `_auth_user_hash` with.
const SECRET_KEY: &str = "shared-login-test-secret-key-0123456789abcdefghij";
const USER: &str = "ada";
const PASSWORD: &str = "correct horse battery staple";

/// A site's start, migrations included, takes seconds.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Concurrent writes per site in the race.
const RACING_WRITES: usize = 20;

/// A site in a child process, killed when dropped.
struct ChildSite {
    name: &'static str,
    url: String,
    child: Child,
}

impl Drop for ChildSite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command`, which prints `listening on <port>` on its first line
/// of standard output once it serves on 127.0.0.1.
fn start_site(name: &'static str, command: &mut Command) -> ChildSite {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start the {name} site: {error}"));
    let stdout = child.stdout.take().unwrap();
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = port_tx.send(first);
    });
    let first = port_rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
    let Some(port) = first.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        panic!("the {name} site did not start: {first:?}\n--- stderr\n{stderr}");
    };
    ChildSite {
        name,
        url: format!("http://127.0.0.1:{port}"),
        child,
    }
}

/// The axum site, in this process, on sessiond-client's `SessionLayer`.
async fn start_axum_site(sessiond: &str) -> String {
    // JSON by hand: the server's axum is built without its `json` feature.
    async fn show(session: Session) -> Result<String, SessionError> {
        let data: serde_json::Map<String, Value> = session.items().await?.into_iter().collect();
        Ok(json!({ "data": data }).to_string())
    }
    async fn set(
        session: Session,
        UrlPath(name): UrlPath<String>,
        body: String,
    ) -> Result<String, SessionError> {
        let value: Value = serde_json::from_str(&body).unwrap();
        session.insert(&name, value).await?;
        Ok(json!({ "ok": true }).to_string())
    }
    async fn logout(session: Session) -> Result<String, SessionError> {
        session.flush().await?;
        Ok(json!({ "ok": true }).to_string())
    }
    let client = Client::connect(format!("http://{sessiond}")).await.unwrap();
    let app = Router::new()
        .route("/session", get(show))
        .route("/session/{name}", post(set))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(
            Backend::Server(client),
            Settings::default(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// What one site answered.
struct Answer {
    status: StatusCode,
    set_cookie: Vec<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?} ({})", self.body, self.status))
    }

    /// The session key the answer's `sessionid` cookie sets.
    fn session_cookie(&self) -> Option<&str> {
        self.set_cookie
            .iter()
            .find_map(|cookie| cookie.strip_prefix("sessionid="))
            .map(|rest| rest.split(';').next().unwrap())
    }
}

async fn send(request: reqwest::RequestBuilder, key: Option<&str>) -> Answer {
    let request = match key {
        Some(key) => request.header(COOKIE, format!("sessionid={key}")),
        None => request,
    };
    let response = request.send().await.unwrap();
    Answer {
        status: response.status(),
        set_cookie: response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect(),
        body: response.text().await.unwrap(),
    }
}

/// `GET /session` of the site at `url`: its `{"data": …}` answer.
async fn session_at(url: &str, key: &str) -> Value {
    let answer = send(
        reqwest::Client::new().get(format!("{url}/session")),
        Some(key),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{url}: {}", answer.body);
    answer.json()
}

/// `POST /session/<name>` with `value` as its JSON body.
async fn set_at(url: &str, key: &str, name: &str, value: &Value) -> Answer {
    send(
        reqwest::Client::new()
            .post(format!("{url}/session/{name}"))
            .header("content-type", "application/json")
            .body(value.to_string()),
        Some(key),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_login_is_shared_by_django_express_flask_and_axum() {
    let Some(venv) = python::venv(&[
        python::DJANGO,
        python::GRPCIO,
        python::GRPCIO_TOOLS,
        python::PROTOBUF,
        python::FLASK,
    ]) else {
        return;
    };
    let Some(node_package) = node::installed_package().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("sessions.sqlite3").display());
    let server = Running::start(
        sessiond()
            .env("SESSIOND_STORE", &store)
            .env("SESSIOND_CODEC", "django")
            .env("SESSIOND_SECRET_KEY", SECRET_KEY),
    );
    let sites_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shared_login");
    let stubs = tempfile::tempdir().unwrap();
    let python_path = python::checkout_path(&venv, stubs.path()).await;

    let django = start_site(
        "Django",
        Command::new(venv.join("bin/python"))
            .arg(sites_dir.join("django_site.py"))
            .env("PYTHONPATH", &python_path)
            .env("SESSIOND_ADDRESS", &server.addr)
            .env("DJANGO_DB", dir.path().join("users.sqlite3"))
            .env("DJANGO_SECRET_KEY", SECRET_KEY)
            .env("SITE_USER", USER)
            .env("SITE_PASSWORD", PASSWORD),
    );
    let flask = start_site(
        "Flask",
        Command::new(venv.join("bin/python"))
            .arg(sites_dir.join("flask_site.py"))
            .env("PYTHONPATH", &python_path)
            .env("SESSIOND_ADDRESS", &server.addr),
    );
    let express = start_site(
        "Express",
        Command::new(node::NODE)
            .arg(sites_dir.join("express_site.js"))
            .env("SESSIOND_NODE_PACKAGE", &node_package)
            .env("SESSIOND_ADDRESS", &server.addr),
    );
    let axum = start_axum_site(&server.addr).await;
    let others = [
        (express.name, express.url.as_str()),
        (flask.name, flask.url.as_str()),
        ("axum", axum.as_str()),
    ];

    // Django logs the user in: login() cycles the key and stores the user.
    let login = send(
        reqwest::Client::new()
            .post(format!("{}/login", django.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "username={USER}&password={}",
                PASSWORD.replace(' ', "+")
            )),
        None,
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let user_id = login.json()["user"].clone();
    let key = login
        .session_cookie()
        .expect("no session cookie")
        .to_owned();
    assert_eq!(key.len(), 32, "{key}");

    // Each other site sees the same user on the same cookie.
    for (name, url) in others {
        let session = session_at(url, &key).await;
        assert_eq!(
            session["data"]["_auth_user_id"],
            json!(user_id.to_string()),
            "{name} does not see Django's login: {session}"
        );
    }

    // Each site adds a value, and every site reads all of them; Django
    // still sees the user logged in, its `_auth_user_hash` intact.
    let all = [("Django", django.url.as_str())]
        .into_iter()
        .chain(others)
        .collect::<Vec<_>>();
    for (name, url) in &all {
        let answer = set_at(url, &key, &format!("from_{name}"), &json!({ "site": name })).await;
        assert_eq!(answer.status, StatusCode::OK, "{name}: {}", answer.body);
    }
    for (name, url) in &all {
        let data = session_at(url, &key).await["data"].clone();
        for (writer, _) in &all {
            assert_eq!(
                data[format!("from_{writer}")],
                json!({ "site": writer }),
                "{name} does not see what {writer} wrote: {data}"
            );
        }
    }
    let django_view = session_at(&django.url, &key).await;
    assert_eq!(django_view["user"], user_id, "{django_view}");

    // Express and Flask write different members at once: none is lost.
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..RACING_WRITES {
        for (name, url) in [
            ("express", express.url.clone()),
            ("flask", flask.url.clone()),
        ] {
            let key = key.clone();
            writes.spawn(async move {
                let answer = set_at(&url, &key, &format!("{name}_{i}"), &json!(i)).await;
                assert_eq!(answer.status, StatusCode::OK, "{name}: {}", answer.body);
            });
        }
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap();
    }
    let data = session_at(&axum, &key).await["data"].clone();
    let written: BTreeSet<String> = data
        .as_object()
        .unwrap()
        .keys()
        .filter(|name| name.starts_with("express_") || name.starts_with("flask_"))
        .cloned()
        .collect();
    assert_eq!(
        written.len(),
        2 * RACING_WRITES,
        "writes were lost: {written:?}"
    );

    // Logout in Express: the session is gone for every site.
    let logout = send(
        reqwest::Client::new().post(format!("{}/logout", express.url)),
        Some(&key),
    )
    .await;
    assert_eq!(logout.status, StatusCode::OK, "{}", logout.body);
    // Removed as Django removes it: an empty quoted value, expired.
    assert!(
        logout.session_cookie() == Some("\"\"")
            && logout.set_cookie.iter().any(|c| c.contains("Max-Age=0")),
        "Express did not remove the cookie: {:?}",
        logout.set_cookie
    );
    let django_view = session_at(&django.url, &key).await;
    assert_eq!(django_view["user"], Value::Null, "{django_view}");
    for (name, url) in others {
        let session = session_at(url, &key).await;
        assert_eq!(session["data"], json!({}), "{name} still has a session");
    }
    drop(server);
}
