//! The actix-web example's middleware and handlers (`examples/actix_app.rs`,
//! built on the framework-neutral `SessionCookies`), driven through
//! actix-web's test service against a real sessiond: the same cookie
//! behaviour as the tower layer (`tests/middleware.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../examples/actix_app.rs"]
mod actix_app;
mod common;

use actix_app::SessionFailure;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, COOKIE, HOST, SET_COOKIE, VARY};
use actix_web::middleware::from_fn;
use actix_web::web::{self, Data, Query, ReqData};
use actix_web::{App, HttpResponse, test};
use common::Sessiond;
use common::logs::Logs;
use common::pauses::{Paused, Pauses};
use sessiond_client::{Backend, INTERRUPTED_BODY, Session, SessionCookies, SessionError, Settings};

/// Test pages beside the example's own: counts, fails, and sets slowly.
async fn increment(session: ReqData<Session>) -> Result<String, SessionFailure> {
    let count = session.get::<i64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", count).await?;
    Ok(count.to_string())
}

async fn broken(session: ReqData<Session>) -> HttpResponse {
    let _ = session.insert("lost", true).await;
    HttpResponse::InternalServerError().body("boom")
}

#[derive(serde::Deserialize)]
struct SetParams {
    key: String,
    value: String,
    /// Save in the handler, so that the handler meets the logout.
    #[serde(default)]
    save: bool,
}

async fn set_slowly(
    session: ReqData<Session>,
    pauses: Data<Pauses>,
    params: Query<SetParams>,
) -> Result<&'static str, SessionFailure> {
    session.keys().await?;
    pauses.pause().await;
    session.insert(&params.key, &params.value).await?;
    if params.save {
        session.save().await?;
    }
    Ok("ok")
}

/// The example's site and the test pages, with sessions in `backend`.
async fn site(
    backend: Backend,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
> {
    site_with_pauses(backend).await.0
}

/// [`site`], and the requests to `/set` that wait for the test after
/// loading their session.
async fn site_with_pauses(
    backend: Backend,
) -> (
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
    Paused,
) {
    let cookies = SessionCookies::new(backend, Settings::default());
    let (pauses, paused) = Pauses::new();
    let app = test::init_service(
        App::new()
            .app_data(Data::new(cookies))
            .app_data(Data::new(pauses))
            .wrap(from_fn(actix_app::sessions))
            .configure(actix_app::routes)
            .route("/increment", web::get().to(increment))
            .route("/broken", web::get().to(broken))
            .route("/set", web::get().to(set_slowly)),
    )
    .await;
    (app, paused)
}

struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    set_cookie: Vec<String>,
    vary: Option<String>,
    body: String,
}

impl Answer {
    /// The session key the response's cookie carries.
    fn key(&self) -> String {
        let cookie = self.set_cookie.first().expect("a Set-Cookie header");
        let value = cookie.split(';').next().unwrap();
        value.strip_prefix("sessionid=").unwrap().to_owned()
    }
}

async fn fetch<S, B>(app: &S, path: &str, cookie: Option<&str>) -> Answer
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut request = test::TestRequest::get().uri(path);
    if let Some(cookie) = cookie {
        request = request.insert_header((COOKIE, cookie));
    }
    answer(test::call_service(app, request.to_request()).await).await
}

/// The status of a GET of `path` sent with `Host: host`, as a browser
/// reaching the site under that name would send it.
async fn fetch_as<S, B>(app: &S, path: &str, host: &str) -> StatusCode
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let request = test::TestRequest::get()
        .uri(path)
        .insert_header((HOST, host));
    test::call_service(app, request.to_request()).await.status()
}

async fn answer<B: MessageBody>(response: ServiceResponse<B>) -> Answer {
    let status = response.status();
    let headers = response.headers();
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let set_cookie = headers
        .get_all(SET_COOKIE)
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    let vary = headers.get(VARY).map(|v| v.to_str().unwrap().to_owned());
    let body = test::read_body(response).await;
    Answer {
        status,
        content_type,
        set_cookie,
        vary,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

#[actix_web::test]
async fn a_modified_session_is_saved_and_gets_a_cookie_with_djangos_defaults() {
    let sessiond = Sessiond::start().await;
    let app = site(sessiond.backend()).await;
    let answer = fetch(&app, "/", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("Visits in this session: 1"));
    assert_eq!(answer.set_cookie.len(), 1);
    let cookie = &answer.set_cookie[0];
    assert!(cookie.contains("; expires="), "{cookie}");
    assert!(
        cookie.ends_with(" GMT; HttpOnly; Max-Age=1209600; Path=/; SameSite=Lax"),
        "{cookie}"
    );
    assert_eq!(answer.vary.as_deref(), Some("Cookie"));
    let key = answer.key();
    assert_eq!(key.len(), 32);
    assert!(sessiond.client.exists(&key).await.unwrap());

    let again = fetch(&app, "/", Some(&format!("sessionid={key}"))).await;
    assert!(again.body.contains("Visits in this session: 2"));
    assert_eq!(again.key(), key);
}

#[actix_web::test]
async fn login_cycles_the_key_and_logout_deletes_the_cookie() {
    let sessiond = Sessiond::start().await;
    let app = site(sessiond.backend()).await;
    let before = fetch(&app, "/", None).await.key();
    let login = fetch(
        &app,
        "/login?user=ada",
        Some(&format!("sessionid={before}")),
    )
    .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let after = login.key();
    assert_ne!(before, after);
    assert!(!sessiond.client.exists(&before).await.unwrap());

    let logout = fetch(&app, "/logout", Some(&format!("sessionid={after}"))).await;
    assert_eq!(
        logout.set_cookie,
        vec![
            "sessionid=\"\"; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; SameSite=Lax"
                .to_owned()
        ]
    );
    assert_eq!(logout.vary.as_deref(), Some("Cookie"));
    assert!(!sessiond.client.exists(&after).await.unwrap());
}

#[actix_web::test]
async fn nothing_is_saved_on_a_server_error() {
    let sessiond = Sessiond::start().await;
    let app = site(sessiond.backend()).await;
    let answer = fetch(&app, "/broken", None).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.body, "boom");
    assert!(answer.set_cookie.is_empty());
    assert_eq!(answer.vary.as_deref(), Some("Cookie"));
}

#[actix_web::test]
async fn an_untouched_session_changes_nothing() {
    let sessiond = Sessiond::start().await;
    let app = site(sessiond.backend()).await;
    let key = fetch(&app, "/", None).await.key();
    // The 404 page never looks at the session.
    let answer = fetch(&app, "/nowhere", Some(&format!("sessionid={key}"))).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.set_cookie.is_empty());
    assert_eq!(answer.vary, None);
}

/// The session is loaded by a request, then logged out elsewhere before the
/// request saves: 400, saying what to do, whether the middleware or the
/// handler saves, with one save reaching sessiond (the middleware does not
/// save again after the handler's save failed).
#[actix_web::test]
async fn an_update_of_a_session_deleted_meanwhile_answers_400() {
    for save_in_handler in [false, true] {
        let sessiond = Sessiond::start_with_metrics().await;
        let (app, mut paused) = site_with_pauses(sessiond.backend()).await;
        let key = fetch(&app, "/increment", None).await.key();
        let path = format!("/set?key=a&value=b&save={save_in_handler}");
        let cookie = format!("sessionid={key}");
        let logout = async {
            let resume = paused.recv().await.expect("a paused request");
            sessiond.client.delete(&key).await.unwrap();
            resume.send(()).expect("the request still waits");
        };
        let (answer, ()) = tokio::join!(fetch(&app, &path, Some(&cookie)), logout);
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(answer.body, INTERRUPTED_BODY, "{path}");
        assert_eq!(
            answer.content_type.as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert!(answer.set_cookie.is_empty(), "{path}");
        assert!(
            !sessiond.client.exists(&key).await.unwrap(),
            "the deleted session came back ({path})"
        );
        assert_eq!(
            sessiond.calls("Patch", "NOT_FOUND").await,
            1,
            "saves of a deleted session ({path})"
        );
    }
}

/// The user name comes from the query string: the page shows it as text.
#[actix_web::test]
async fn the_example_escapes_the_user_name() {
    let sessiond = Sessiond::start().await;
    let app = site(sessiond.backend()).await;
    let key = fetch(
        &app,
        "/login?user=%3Cscript%3Ealert(1)%3C%2Fscript%3E%26",
        None,
    )
    .await
    .key();
    let page = fetch(&app, "/", Some(&format!("sessionid={key}"))).await;
    assert!(
        page.body
            .contains("Hello, &lt;script&gt;alert(1)&lt;/script&gt;&amp;."),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>"), "{}", page.body);
}

/// actix-web's `Logger` prints a failed response's error with `{:?}`: it
/// shows the message, never serde's error, which quotes session data.
#[actix_web::test]
async fn a_session_failure_debugs_as_its_message() {
    let source = serde_json::from_str::<i64>("\"a secret value\"").unwrap_err();
    let failure = SessionFailure::from(SessionError::Deserialize {
        key: "count".into(),
        source,
    });
    let shown = format!("{failure:?}");
    assert_eq!(shown, failure.to_string());
    assert!(!shown.contains("secret"), "{shown}");
}

/// The warning about a cookie without `Secure` comes from the
/// framework-neutral `SessionCookies` (no tower here), once, and only for a
/// host that is not this machine.
#[actix_web::test]
async fn a_cookie_without_secure_on_a_public_host_warns_once() {
    let (logs, _guard) = Logs::capture("sessiond_client=warn");
    let sessiond = Sessiond::start().await;
    let app = site(sessiond.backend()).await;
    let warnings = || logs.text().matches(" WARN ").count();

    for host in ["127.0.0.1:8080", "localhost", "[::1]:3000"] {
        assert_eq!(fetch_as(&app, "/increment", host).await, StatusCode::OK);
    }
    assert_eq!(warnings(), 0, "{}", logs.text());
    for _ in 0..3 {
        assert_eq!(
            fetch_as(&app, "/increment", "shop.example.com").await,
            StatusCode::OK
        );
    }
    let logged = logs.text();
    assert_eq!(warnings(), 1, "warned once:\n{logged}");
    assert!(logged.contains("without Secure"), "{logged}");
    assert!(logged.contains("host=shop.example.com"), "{logged}");
}

/// A handler's failed session call answers 500 through `?`, logged once,
/// with the cause, and without details in the body.
#[actix_web::test]
async fn a_handler_answers_500_when_sessiond_is_down() {
    let (logs, _guard) = Logs::capture("sessiond_client=error,actix=error");
    let sessiond = Sessiond::start().await;
    let app = site(sessiond.backend()).await;
    let key = fetch(&app, "/increment", None).await.key();
    sessiond.stop().await;

    let answer = fetch(&app, "/increment", Some(&format!("sessionid={key}"))).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.body, "Internal Server Error");
    assert!(answer.set_cookie.is_empty());
    let logged = logs.text();
    assert_eq!(
        logged.matches(" ERROR ").count(),
        1,
        "logged once:\n{logged}"
    );
    // The cause, down to the transport (a refused or a closed connection).
    assert!(
        logged.contains("error=the session store failed: sessiond Load failed ("),
        "{logged}"
    );
    assert!(logged.contains(": transport error: "), "{logged}");
    assert!(!logged.contains(&key), "the key was logged:\n{logged}");
}
