//! Bearer-token authentication of session calls.
//!
//! Clients send `authorization: Bearer TOKEN`. The tokens come from
//! `--tokens-file` (one per line, optionally named, reread on SIGHUP) and
//! `--token` / `SESSIOND_TOKEN`. Only SHA-256 digests of the tokens are
//! kept, and a presented token is compared with every one of them in
//! constant time, so neither the timing of an answer nor the server's memory
//! tells anything about a token. Without any token configured, calls are not
//! checked (safe only on loopback; see `config`).
//!
//! The health service is never checked: load balancers and orchestrators
//! probe it without credentials.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::method::Method;
use crate::secret::Secret;

/// Shortest token accepted: 16 characters of a random token are 80 bits
/// even in hexadecimal, beyond guessing at any request rate.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the tokens could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the tokens file {} (--tokens-file, SESSIOND_TOKENS_FILE)", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}, line {line}: {reason} (--tokens-file, SESSIOND_TOKENS_FILE); \
         each line is a token, or a name and a token separated by a space",
        path.display()
    )]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "the token of --token (SESSIOND_TOKEN) {0}; use a random token, e.g. `openssl rand -hex 32`"
    )]
    Single(String),
    #[error(
        "the tokens file {} holds no token (--tokens-file, SESSIOND_TOKENS_FILE); add one, or leave the flag out",
        .0.display()
    )]
    Empty(PathBuf),
}

/// One accepted token: its digest and the name it is logged under.
#[derive(Clone)]
struct Token {
    digest: [u8; 32],
    name: Arc<str>,
}

/// The accepted tokens. `Debug` shows names only.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tokens.iter().map(|token| &token.name))
            .finish()
    }
}

impl Tokens {
    /// The tokens of `file` (if any) and the single `token` (if any).
    pub fn load(file: Option<&Path>, token: Option<&str>) -> Result<Self, TokensError> {
        let mut tokens = Vec::new();
        if let Some(token) = token {
            check_token(token).map_err(TokensError::Single)?;
            tokens.push(Token::new(token, "token"));
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
                path: path.to_owned(),
                source,
            })?;
            let before = tokens.len();
            parse_file(&text, path, &mut tokens)?;
            if tokens.len() == before {
                return Err(TokensError::Empty(path.to_owned()));
            }
        }
        Ok(Self { tokens })
    }

    /// No token is configured: calls are not checked.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// The name of the token `presented` matches. Every token is compared,
    /// whether or not an earlier one matched, each in constant time.
    fn check(&self, presented: &str) -> Option<Arc<str>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.digest.ct_eq(&digest)) {
                found = Some(token.name.clone());
            }
        }
        found
    }
}

impl Token {
    fn new(token: &str, name: &str) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
            name: name.into(),
        }
    }
}

/// Refuses tokens that are short or that no header could carry.
fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "is {} characters long; at least {MIN_TOKEN_LEN} are needed",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("contains spaces, control or non-ASCII characters".into());
    }
    Ok(())
}

fn parse_file(text: &str, path: &Path, tokens: &mut Vec<Token>) -> Result<(), TokensError> {
    for (index, line) in text.lines().enumerate() {
        let line_error = |reason: String| TokensError::Line {
            path: path.to_owned(),
            line: index + 1,
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, token) = match fields.as_slice() {
            [token] => (format!("line {}", index + 1), *token),
            [name, token] => ((*name).to_owned(), *token),
            _ => return Err(line_error(format!("{} fields", fields.len()))),
        };
        check_token(token).map_err(|reason| line_error(format!("the token {reason}")))?;
        if tokens.iter().any(|known| *known.name == *name) {
            return Err(line_error(format!("the name {name:?} is used twice")));
        }
        tokens.push(Token::new(token, &name));
    }
    Ok(())
}

/// The tokens in force, shared by every call and replaced on reload.
#[derive(Clone)]
pub struct TokenStore {
    current: Arc<RwLock<Tokens>>,
    file: Option<PathBuf>,
    token: Option<Secret>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("tokens", &*self.read())
            .field("file", &self.file)
            .field("token", &self.token)
            .finish()
    }
}

impl TokenStore {
    /// Reads the tokens of `file` and `token`.
    pub fn open(file: Option<PathBuf>, token: Option<Secret>) -> Result<Self, TokensError> {
        let tokens = Tokens::load(file.as_deref(), token.as_ref().map(Secret::expose))?;
        if let Some(path) = &file {
            warn_if_readable_by_others(path);
        }
        Ok(Self {
            current: Arc::new(RwLock::new(tokens)),
            file,
            token,
        })
    }

    /// Whether calls need a token.
    pub fn enabled(&self) -> bool {
        !self.read().is_empty()
    }

    /// Reads the tokens again (on SIGHUP). A file that has become unreadable
    /// or malformed leaves the tokens in force unchanged.
    pub fn reload(&self) -> Result<usize, TokensError> {
        let tokens = Tokens::load(
            self.file.as_deref(),
            self.token.as_ref().map(Secret::expose),
        )?;
        let count = tokens.len();
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tokens;
        Ok(count)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tokens> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks a call's `authorization` header.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let tokens = self.read();
        if tokens.is_empty() {
            return Ok(());
        }
        // Put there by the call tracking in front of the session service;
        // reflection calls have none and log as "unknown".
        let method = Method::label(request.extensions().get::<Method>().copied());
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        let Some(presented) = presented else {
            tracing::debug!(method, "call without a bearer token refused");
            return Err(Status::unauthenticated(
                "this server needs a bearer token: send `authorization: Bearer TOKEN`",
            ));
        };
        match tokens.check(presented.trim()) {
            Some(name) => {
                tracing::debug!(method, token = %name, "authenticated");
                Ok(())
            }
            None => {
                tracing::debug!(method, "call with an unknown bearer token refused");
                Err(Status::unauthenticated("the bearer token is not accepted"))
            }
        }
    }
}

/// Tokens are secrets: say so when others on the machine can read them.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(
            file = %path.display(),
            "the tokens file is readable by every user of this machine; chmod o-r it"
        );
    }
}

/// The interceptor in front of the session service (and reflection).
#[derive(Debug, Clone)]
pub struct RequireToken(pub TokenStore);

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.0.authenticate(&request)?;
        Ok(request)
    }
}

/// The token of an `authorization` value `Bearer TOKEN`; the scheme name is
/// case-insensitive, as every HTTP authentication scheme is.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    }

    fn store_of(text: &str) -> (TokenStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, text).unwrap();
        (TokenStore::open(Some(path), None).unwrap(), dir)
    }

    #[test]
    fn named_and_unnamed_tokens_are_accepted_and_others_refused() {
        let (store, _dir) =
            store_of("# app servers\nfrontend  0123456789abcdef0123\n\nfedcba9876543210fedc\n");
        assert!(store.enabled());
        assert!(
            store
                .authenticate(&request(Some("Bearer 0123456789abcdef0123")))
                .is_ok()
        );
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let value = format!("{scheme} fedcba9876543210fedc");
            assert!(
                store.authenticate(&request(Some(&value))).is_ok(),
                "{value}"
            );
        }
        for refused in [
            None,
            Some("Bearer 0123456789abcdef012"),
            Some("Bearer 0123456789abcdef01234"),
            Some("0123456789abcdef0123"),
            Some("Basic 0123456789abcdef0123"),
            Some("Bearer frontend"),
        ] {
            let status = store.authenticate(&request(refused)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{refused:?}");
            assert!(!status.message().contains("0123456789"), "{status:?}");
        }
    }

    #[test]
    fn without_tokens_nothing_is_checked() {
        let store = TokenStore::open(None, None).unwrap();
        assert!(!store.enabled());
        assert!(store.authenticate(&request(None)).is_ok());
    }

    #[test]
    fn bad_files_are_refused_naming_the_line() {
        for (text, expected) in [
            ("short\n", "line 1"),
            (
                "ok 0123456789abcdef0123\nok 1123456789abcdef0123\n",
                "used twice",
            ),
            ("a b c\n", "3 fields"),
            ("# nothing but comments\n", "holds no token"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tokens");
            std::fs::write(&path, text).unwrap();
            let err = TokenStore::open(Some(path), None).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(err.contains("--tokens-file"), "{err}");
        }
        let err = TokenStore::open(None, Some("tiny".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SESSIOND_TOKEN") && !err.contains("tiny"),
            "{err}"
        );
    }

    #[test]
    fn a_reload_takes_new_tokens_and_keeps_the_old_ones_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let store = TokenStore::open(Some(path.clone()), None).unwrap();
        std::fs::write(&path, "fedcba9876543210fedc\n").unwrap();
        assert_eq!(store.reload().unwrap(), 1);
        let new = request(Some("Bearer fedcba9876543210fedc"));
        assert!(store.authenticate(&new).is_ok());
        let old = request(Some("Bearer 0123456789abcdef0123"));
        assert!(store.authenticate(&old).is_err());
        std::fs::write(&path, "bad\n").unwrap();
        assert!(store.reload().is_err());
        assert!(store.authenticate(&new).is_ok());
    }

    #[test]
    fn debug_output_shows_names_only() {
        let (store, _dir) = store_of("frontend 0123456789abcdef0123\n");
        let shown = format!("{store:?}");
        assert!(shown.contains("frontend"), "{shown}");
        assert!(!shown.contains("0123456789"), "{shown}");
    }
}
