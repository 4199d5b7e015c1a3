//! Counting in-flight calls, so that shutdown can wait for exactly those.
//!
//! The HTTP/2 server's own graceful shutdown waits until every client closes
//! its connection, and an idle client that keeps its connection open would
//! hold the process up indefinitely. Instead, sessiond waits until no call
//! is in flight (a call ends when its response body has been handed over),
//! bounded by `--drain-timeout`, then closes what is left.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tower::{Layer, Service};

/// Shared count of calls in flight.
#[derive(Debug, Clone, Default)]
pub(crate) struct InFlight {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    calls: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    fn enter(&self) -> CallGuard {
        self.state.calls.fetch_add(1, Ordering::SeqCst);
        CallGuard {
            state: self.state.clone(),
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Completes when no call is in flight.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.state.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Marks one call in flight until dropped.
#[derive(Debug)]
struct CallGuard {
    state: Arc<State>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.state.calls.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.state.idle.notify_waiters();
        }
    }
}

/// A tower layer that counts every call through it in an [`InFlight`].
#[derive(Debug, Clone)]
pub(crate) struct TrackInFlight(pub(crate) InFlight);

impl<S> Layer<S> for TrackInFlight {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            in_flight: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    in_flight: InFlight,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Tracked<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<GuardedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let guard = self.in_flight.enter();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| GuardedBody {
                body,
                _guard: guard,
            }))
        })
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Tracked<S> {
    const NAME: &'static str = S::NAME;
}

/// A response body that keeps its call counted until it is dropped.
#[derive(Debug)]
pub(crate) struct GuardedBody<B> {
    body: B,
    _guard: CallGuard,
}

impl<B: Body + Unpin> Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
