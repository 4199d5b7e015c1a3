//! The gRPC face of sessiond: turns requests into domain types (validation
//! happens here and nowhere else), calls the engine, and answers errors
//! through the one mapping of `error::to_status`.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use tonic::{Request, Response, Status};

use crate::codec::Codec;
use crate::config::ServerConfig;
use crate::error::{Classified, ErrorKind, to_status};
use crate::method::Method;
use crate::metrics::{Metrics, PurgeTrigger};
use crate::proto::session_service_server::SessionService;
use crate::proto::{
    ClearExpiredRequest, ClearExpiredResponse, CreateRequest, CreateResponse, CycleKeyRequest,
    CycleKeyResponse, DeleteRequest, DeleteResponse, ExistsRequest, ExistsResponse, LoadRequest,
    LoadResponse, PatchRequest, PatchResponse, SaveRequest, SaveResponse,
};
use crate::session::{ExpireDate, InvalidInput, Record, SessionData, SessionKey, SessionPatch};
use crate::store::{self, SessionStore, StoreError};

/// Fresh keys drawn before Create or CycleKey gives up. With 165 random bits
/// a second draw is already astronomically rare; running out means the
/// random source or the engine is broken.
const MAX_KEY_ATTEMPTS: u32 = 10;

/// What the handlers need besides the engine.
#[derive(Debug, Clone)]
pub struct Settings {
    pub codec: Codec,
    /// Expiry of a session saved without an explicit one: Django's
    /// `SESSION_COOKIE_AGE`.
    pub session_age: TimeDelta,
    pub max_data_bytes: usize,
    pub purge_batch_size: u64,
}

impl Settings {
    /// The handlers' settings from the server's configuration.
    pub fn new(codec: Codec, config: &ServerConfig) -> Self {
        Self {
            codec,
            session_age: TimeDelta::from_std(config.store.options.session_age)
                .unwrap_or(TimeDelta::MAX),
            max_data_bytes: usize::try_from(config.limits.max_data_bytes).unwrap_or(usize::MAX),
            purge_batch_size: config.purge.batch_size,
        }
    }
}

/// Implements `sessiond.v1.SessionService` on a storage engine.
#[derive(Debug, Clone)]
pub struct SessionRpc {
    store: Arc<dyn SessionStore>,
    settings: Settings,
    metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
enum RpcError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no unused session key found in {MAX_KEY_ATTEMPTS} attempts")]
    KeysExhausted,
}

impl Classified for RpcError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(err) => err.kind(),
            Self::Store(err) => err.kind(),
            Self::KeysExhausted => ErrorKind::Internal,
        }
    }

    fn causes_quote_input(&self) -> bool {
        match self {
            Self::Invalid(err) => err.causes_quote_input(),
            Self::Store(err) => err.causes_quote_input(),
            Self::KeysExhausted => false,
        }
    }
}

/// Checks a key from a request.
fn session_key(text: &str) -> Result<SessionKey, InvalidInput> {
    Ok(SessionKey::parse(text)?)
}

type RpcResult<T> = Result<Response<T>, Status>;

impl SessionRpc {
    pub fn new(store: Arc<dyn SessionStore>, settings: Settings, metrics: Metrics) -> Self {
        Self {
            store,
            settings,
            metrics,
        }
    }

    fn data(&self, text: String) -> Result<SessionData, InvalidInput> {
        SessionData::parse(text, self.settings.max_data_bytes)
    }

    /// The requested expiry, or now plus the default session age.
    fn expire_date(
        &self,
        requested: Option<&prost_types::Timestamp>,
        now: chrono::DateTime<Utc>,
    ) -> Result<ExpireDate, InvalidInput> {
        match requested {
            Some(ts) => ExpireDate::from_timestamp(ts),
            None => ExpireDate::after(now, self.settings.session_age),
        }
    }

    async fn load(&self, req: LoadRequest) -> Result<LoadResponse, RpcError> {
        let key = session_key(&req.session_key)?;
        let Some(record) = self.store.load(&key, Utc::now()).await? else {
            return Ok(LoadResponse::default());
        };
        let data = match self.settings.codec.decode(record.session_data, unix_now()) {
            Ok(data) => data,
            Err(err) => {
                // As Django does: a corrupted row reads as an empty session.
                // Only the outer message: the parser's causes quote the data.
                tracing::warn!(error = %err, "stored session data cannot be decoded; answering with an empty session");
                SessionData::empty().into_string()
            }
        };
        Ok(LoadResponse {
            found: true,
            data,
            expire_date: Some(record.expire_date.to_timestamp()),
        })
    }

    async fn exists(&self, req: ExistsRequest) -> Result<ExistsResponse, RpcError> {
        let key = session_key(&req.session_key)?;
        let exists = self.store.exists(&key).await?;
        Ok(ExistsResponse { exists })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, RpcError> {
        let data = self.data(req.data)?;
        let expire_date = self.expire_date(req.expire_date.as_ref(), Utc::now())?;
        let session_data = self.settings.codec.encode(data, unix_now());
        for _ in 0..MAX_KEY_ATTEMPTS {
            let key = SessionKey::generate();
            let record = Record {
                session_data: session_data.clone(),
                expire_date,
            };
            match self.store.insert(&key, record).await {
                Ok(()) => {
                    self.metrics.session_created();
                    return Ok(CreateResponse {
                        session_key: key.into_string(),
                        expire_date: Some(expire_date.to_timestamp()),
                    });
                }
                Err(StoreError::AlreadyExists) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(RpcError::KeysExhausted)
    }

    async fn save(&self, req: SaveRequest) -> Result<SaveResponse, RpcError> {
        let key = session_key(&req.session_key)?;
        let data = self.data(req.data)?;
        let expire_date = self.expire_date(req.expire_date.as_ref(), Utc::now())?;
        let record = Record {
            session_data: self.settings.codec.encode(data, unix_now()),
            expire_date,
        };
        if req.must_create {
            self.store.insert(&key, record).await?;
            self.metrics.session_created();
        } else {
            self.store.update(&key, record).await?;
        }
        Ok(SaveResponse {
            expire_date: Some(expire_date.to_timestamp()),
        })
    }

    async fn patch(&self, req: PatchRequest) -> Result<PatchResponse, RpcError> {
        let key = session_key(&req.session_key)?;
        let max_bytes = self.settings.max_data_bytes;
        let patch = SessionPatch::parse(&req.set, req.remove, req.replace, max_bytes)?;
        let now = Utc::now();
        let expire_date = self.expire_date(req.expire_date.as_ref(), now)?;
        let codec = self.settings.codec.clone();
        let patcher = Box::new(move |stored: Option<String>| {
            let now = unix_now();
            let base = stored.and_then(|stored| match codec.decode(stored, now) {
                Ok(data) => Some(data),
                Err(err) => {
                    // Only the outer message: the parser's causes quote the data.
                    tracing::warn!(error = %err, "stored session data cannot be decoded; patching an empty session");
                    None
                }
            });
            let data = patch.apply(base.as_deref(), max_bytes)?;
            Ok(codec.encode(data, now))
        });
        self.store.patch(&key, patcher, expire_date, now).await?;
        Ok(PatchResponse {
            expire_date: Some(expire_date.to_timestamp()),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, RpcError> {
        let key = session_key(&req.session_key)?;
        let deleted = self.store.delete(&key).await?;
        if deleted {
            self.metrics.session_deleted();
        }
        Ok(DeleteResponse { deleted })
    }

    async fn cycle_key(&self, req: CycleKeyRequest) -> Result<CycleKeyResponse, RpcError> {
        let old_key = session_key(&req.session_key)?;
        let session_data = match req.data {
            Some(text) => Some(self.settings.codec.encode(self.data(text)?, unix_now())),
            None => None,
        };
        let now = Utc::now();
        let expire_date = match (&req.expire_date, &session_data) {
            (Some(ts), _) => ExpireDate::from_timestamp(ts)?,
            (None, Some(_)) => ExpireDate::after(now, self.settings.session_age)?,
            // The data moves as stored, and so does its expiry: the caller
            // has not seen the session and cannot know its own expiry.
            (None, None) => {
                self.store
                    .load(&old_key, now)
                    .await?
                    .ok_or(StoreError::NotFound)?
                    .expire_date
            }
        };
        for _ in 0..MAX_KEY_ATTEMPTS {
            let new_key = SessionKey::generate();
            let cycled = self
                .store
                .cycle_key(&old_key, &new_key, session_data.clone(), expire_date, now)
                .await;
            match cycled {
                Ok(()) => {
                    self.metrics.session_cycled();
                    return Ok(CycleKeyResponse {
                        session_key: new_key.into_string(),
                        expire_date: Some(expire_date.to_timestamp()),
                    });
                }
                Err(StoreError::AlreadyExists) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(RpcError::KeysExhausted)
    }

    async fn clear_expired(
        &self,
        _req: ClearExpiredRequest,
    ) -> Result<ClearExpiredResponse, RpcError> {
        let removed = store::clear_expired_among_calls(
            self.store.as_ref(),
            Utc::now(),
            self.settings.purge_batch_size,
            || self.metrics.calls_admitted(),
        )
        .await?;
        self.metrics.purged(PurgeTrigger::Call, removed);
        tracing::info!(removed, "cleared expired sessions");
        Ok(ClearExpiredResponse { removed })
    }
}

/// Seconds since the epoch, for the timestamp Django's signing embeds.
fn unix_now() -> i64 {
    Utc::now().timestamp()
}

impl SessionRpc {
    fn respond<T>(&self, method: Method, result: Result<T, RpcError>) -> RpcResult<T> {
        result.map(Response::new).map_err(|err| {
            if let Some(failure) = err.kind().engine_failure_label() {
                self.metrics.engine_error(failure);
            }
            to_status(&err, method)
        })
    }
}

#[tonic::async_trait]
impl SessionService for SessionRpc {
    async fn load(&self, request: Request<LoadRequest>) -> RpcResult<LoadResponse> {
        self.respond(Method::Load, self.load(request.into_inner()).await)
    }

    async fn exists(&self, request: Request<ExistsRequest>) -> RpcResult<ExistsResponse> {
        self.respond(Method::Exists, self.exists(request.into_inner()).await)
    }

    async fn create(&self, request: Request<CreateRequest>) -> RpcResult<CreateResponse> {
        self.respond(Method::Create, self.create(request.into_inner()).await)
    }

    async fn save(&self, request: Request<SaveRequest>) -> RpcResult<SaveResponse> {
        self.respond(Method::Save, self.save(request.into_inner()).await)
    }

    async fn patch(&self, request: Request<PatchRequest>) -> RpcResult<PatchResponse> {
        self.respond(Method::Patch, self.patch(request.into_inner()).await)
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> RpcResult<DeleteResponse> {
        self.respond(Method::Delete, self.delete(request.into_inner()).await)
    }

    async fn cycle_key(&self, request: Request<CycleKeyRequest>) -> RpcResult<CycleKeyResponse> {
        self.respond(Method::CycleKey, self.cycle_key(request.into_inner()).await)
    }

    async fn clear_expired(
        &self,
        request: Request<ClearExpiredRequest>,
    ) -> RpcResult<ClearExpiredResponse> {
        self.respond(
            Method::ClearExpired,
            self.clear_expired(request.into_inner()).await,
        )
    }
}
