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
//! Whether calls need a token is settled at start-up, from the
//! configuration; a reload changes which tokens are accepted, never whether
//! one is needed. A file emptied of tokens thus revokes them all (every call
//! is refused, `--token` apart) instead of letting every call in, while a
//! file that cannot be read or parsed leaves the tokens in force.
//!
//! The health service is never checked: load balancers and orchestrators
//! probe it without credentials.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::method::Method;
use crate::permissions::warn_if_others_can_read;
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
    /// The tokens of `file` (if any) and the single `token` (if any). A
    /// file without tokens is refused: at start-up it is a mistake (a wrong
    /// path, a deployment not finished), and no client could ever connect.
    pub fn load(file: Option<&Path>, token: Option<&str>) -> Result<Self, TokensError> {
        let (tokens, in_file) = Self::read(file, token)?;
        match file {
            Some(path) if in_file == 0 => Err(TokensError::Empty(path.to_owned())),
            _ => Ok(tokens),
        }
    }

    /// The tokens of `file` and `token`, and how many of them the file
    /// holds, which may be none.
    fn read(file: Option<&Path>, token: Option<&str>) -> Result<(Self, usize), TokensError> {
        let mut tokens = Vec::new();
        if let Some(token) = token {
            check_token(token).map_err(TokensError::Single)?;
            tokens.push(Token::new(token, "token"));
        }
        let single = tokens.len();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
                path: path.to_owned(),
                source,
            })?;
            parse_file(&text, path, &mut tokens)?;
        }
        let in_file = tokens.len() - single;
        Ok((Self { tokens }, in_file))
    }

    /// One token, logged under `name`; the reason if it is too weak to use.
    pub fn single(token: &str, name: &str) -> Result<Self, String> {
        check_token(token)?;
        Ok(Self {
            tokens: vec![Token::new(token, name)],
        })
    }

    /// Whether an `authorization` header value carries one of the tokens.
    pub fn accept(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(bearer_token)
            .is_some_and(|presented| self.check(presented.trim()).is_some())
    }

    /// No token is accepted.
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

/// What a reload put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// These many tokens are accepted now, `--token` included.
    Tokens(usize),
    /// The file holds no token: every token it held is revoked, and only
    /// `--token` is accepted, if `single_token`; otherwise nothing is.
    EmptyFile { file: PathBuf, single_token: bool },
}

/// The tokens in force, shared by every call and replaced on reload.
#[derive(Clone)]
pub struct TokenStore {
    current: Arc<RwLock<Tokens>>,
    /// Whether calls need a token, fixed by the configuration: a reload
    /// that leaves no token must refuse every call, not let them all in.
    required: bool,
    file: Option<PathBuf>,
    token: Option<Secret>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("tokens", &*self.read())
            .field("required", &self.required)
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
            warn_if_others_can_read(path, "the tokens file");
        }
        Ok(Self {
            current: Arc::new(RwLock::new(tokens)),
            required: file.is_some() || token.is_some(),
            file,
            token,
        })
    }

    /// Whether calls need a token; a reload never changes it.
    pub fn enabled(&self) -> bool {
        self.required
    }

    /// Reads the file again, by its path, so a file renamed over it is read
    /// (on SIGHUP). A file that has become unreadable or malformed leaves
    /// the tokens in force unchanged; one without tokens revokes them all.
    pub fn reload(&self) -> Result<Reloaded, TokensError> {
        let (tokens, in_file) = Tokens::read(
            self.file.as_deref(),
            self.token.as_ref().map(Secret::expose),
        )?;
        let reloaded = match &self.file {
            Some(path) => {
                // A file renamed into place has the mode it was written with.
                warn_if_others_can_read(path, "the tokens file");
                if in_file == 0 {
                    Reloaded::EmptyFile {
                        file: path.clone(),
                        single_token: self.token.is_some(),
                    }
                } else {
                    Reloaded::Tokens(tokens.len())
                }
            }
            None => Reloaded::Tokens(tokens.len()),
        };
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tokens;
        Ok(reloaded)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tokens> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks a call's `authorization` header.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if !self.required {
            return Ok(());
        }
        let tokens = self.read();
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
        assert_eq!(store.reload().unwrap(), Reloaded::Tokens(0));
        assert!(!store.enabled());
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
        assert_eq!(store.reload().unwrap(), Reloaded::Tokens(1));
        let new = request(Some("Bearer fedcba9876543210fedc"));
        assert!(store.authenticate(&new).is_ok());
        let old = request(Some("Bearer 0123456789abcdef0123"));
        assert!(store.authenticate(&old).is_err());
        std::fs::write(&path, "bad\n").unwrap();
        assert!(store.reload().is_err());
        assert!(store.authenticate(&new).is_ok());
    }

    const OLD: &str = "0123456789abcdef0123";
    const NEW: &str = "fedcba9876543210fedc";
    const SINGLE: &str = "5e5e5e5e5e5e5e5e5e5e";

    fn refused(store: &TokenStore, authorization: Option<&str>) -> bool {
        store
            .authenticate(&request(authorization))
            .is_err_and(|status| status.code() == tonic::Code::Unauthenticated)
    }

    fn accepted(store: &TokenStore, token: &str) -> bool {
        store
            .authenticate(&request(Some(&format!("Bearer {token}"))))
            .is_ok()
    }

    #[test]
    fn a_reload_to_a_file_without_tokens_refuses_every_call() {
        for text in [
            "",
            "\n\n",
            "# every token revoked\n# app 0123456789abcdef0123\n",
        ] {
            let (store, dir) = store_of(&format!("app {OLD}\n"));
            std::fs::write(dir.path().join("tokens"), text).unwrap();
            let reloaded = store.reload();
            assert!(store.enabled(), "{text:?}: calls are no longer checked");
            for presented in [
                None,
                Some(format!("Bearer {OLD}")),
                Some(format!("Bearer {NEW}")),
                Some("Bearer ".to_owned()),
            ] {
                assert!(
                    refused(&store, presented.as_deref()),
                    "{text:?}: {presented:?} is still accepted"
                );
            }
            let expected = Reloaded::EmptyFile {
                file: dir.path().join("tokens"),
                single_token: false,
            };
            assert_eq!(reloaded.unwrap(), expected, "{text:?}");
        }
    }

    #[test]
    fn a_reload_to_a_file_without_tokens_keeps_the_single_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("app {OLD}\n")).unwrap();
        let store = TokenStore::open(Some(path.clone()), Some(SINGLE.into())).unwrap();
        std::fs::write(&path, "# app revoked\n").unwrap();
        let reloaded = store.reload();
        assert!(
            !accepted(&store, OLD),
            "the revoked token is still accepted"
        );
        assert!(accepted(&store, SINGLE), "--token is no longer accepted");
        let expected = Reloaded::EmptyFile {
            file: path,
            single_token: true,
        };
        assert_eq!(reloaded.unwrap(), expected);
    }

    #[test]
    fn a_reload_of_a_malformed_file_keeps_the_tokens_in_force() {
        for text in [
            format!("{NEW}\nshort\n"),
            format!("new {NEW}\nnew {OLD}\n"),
            format!("new {NEW} extra\n"),
        ] {
            let (store, dir) = store_of(&format!("app {OLD}\n"));
            std::fs::write(dir.path().join("tokens"), &text).unwrap();
            let err = store.reload().unwrap_err().to_string();
            assert!(err.contains("--tokens-file"), "{err}");
            assert!(!err.contains(OLD) && !err.contains(NEW), "{err}");
            assert!(accepted(&store, OLD), "{text:?}");
            assert!(!accepted(&store, NEW), "{text:?}");
        }
        // Not UTF-8: the file cannot be read as text.
        let (store, dir) = store_of(&format!("app {OLD}\n"));
        std::fs::write(dir.path().join("tokens"), b"app \xff\xfe0123456789abcdef\n").unwrap();
        assert!(store.reload().is_err());
        assert!(accepted(&store, OLD));
    }

    #[test]
    fn a_reload_of_an_unreadable_file_keeps_the_tokens_in_force() {
        type Break = fn(&Path);
        let breaks: [(&str, Break); 3] = [
            ("removed", |path| std::fs::remove_file(path).unwrap()),
            ("a directory", |path| {
                std::fs::remove_file(path).unwrap();
                std::fs::create_dir(path).unwrap();
            }),
            ("a dangling link", |path| {
                std::fs::remove_file(path).unwrap();
                std::os::unix::fs::symlink(path.with_extension("gone"), path).unwrap();
            }),
        ];
        for (how, break_file) in breaks {
            let (store, dir) = store_of(&format!("app {OLD}\n"));
            break_file(&dir.path().join("tokens"));
            let err = store.reload().unwrap_err();
            assert!(matches!(err, TokensError::Read { .. }), "{how}: {err}");
            assert!(store.enabled(), "{how}");
            assert!(
                accepted(&store, OLD),
                "{how}: the tokens in force were dropped"
            );
        }
    }

    #[test]
    fn a_reload_reads_a_file_replaced_by_rename() {
        let (store, dir) = store_of(&format!("app {OLD}\n"));
        let next = dir.path().join("tokens.next");
        std::fs::write(&next, format!("app {NEW}\n")).unwrap();
        std::fs::rename(&next, dir.path().join("tokens")).unwrap();
        store.reload().unwrap();
        assert!(accepted(&store, NEW));
        assert!(!accepted(&store, OLD));
    }

    #[test]
    fn debug_output_shows_names_only() {
        let (store, _dir) = store_of("frontend 0123456789abcdef0123\n");
        let shown = format!("{store:?}");
        assert!(shown.contains("frontend"), "{shown}");
        assert!(!shown.contains("0123456789"), "{shown}");
    }
}
