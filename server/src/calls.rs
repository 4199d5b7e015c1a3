//! The life of a session call, from its arrival to the last byte of its
//! answer: counted in flight, refused past `--max-in-flight`, timed and
//! counted by method and status code.
//!
//! Counting calls in flight is also what shutdown waits for. The HTTP/2
//! server's own graceful shutdown waits until every client closes its
//! connection, and an idle client that keeps its connection open would hold
//! the process up indefinitely. Instead, sessiond waits until no call is in
//! flight (a call ends when its response body has been handed over),
//! bounded by `--drain-timeout`, then closes what is left.
//!
//! Past the limit, a call is answered RESOURCE_EXHAUSTED at once rather
//! than queued: a queue in front of a saturated engine only turns overload
//! into timeouts, while a quick refusal lets clients back off or go to
//! another replica, and keeps memory bounded. The limit counts a call until
//! its answer is ready, not until it is sent: a client that stops reading
//! (an HTTP/2 window left at zero) holds its own connection, not a slot.
//!
//! A call that has not produced its answer within `--request-timeout` (its
//! request body never finishing, say) is answered DEADLINE_EXCEEDED and
//! gives its slot back: no client holds a slot for longer.
//!
//! A call that arrives with many others may start a turn of the runtime
//! later than they do, so that the first answers go out sooner (see
//! `split_turns`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tower::{Layer, Service};

use crate::method::Method;
use crate::metrics::Metrics;
use crate::split_turns;

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
    /// Counts a call in, unless `limit` are in flight already.
    fn try_enter(&self, limit: usize) -> bool {
        let mut calls = self.state.calls.load(Ordering::Relaxed);
        loop {
            if calls >= limit {
                return false;
            }
            match self.state.calls.compare_exchange_weak(
                calls,
                calls + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => calls = now,
            }
        }
    }

    /// Counts a call in, whatever the count.
    fn enter(&self) {
        self.state.calls.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a call out.
    fn leave(&self) {
        if self.state.calls.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.state.idle.notify_waiters();
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

/// A tower layer that tracks every call through it.
#[derive(Debug, Clone)]
pub(crate) struct TrackCalls {
    /// Calls until their answer is handed over: what shutdown waits for.
    pub(crate) in_flight: InFlight,
    /// Calls until their answer is ready: what `limit` bounds.
    pub(crate) working: InFlight,
    pub(crate) limit: usize,
    /// How long a call may take to produce its answer.
    pub(crate) timeout: Duration,
    pub(crate) metrics: Metrics,
}

impl<S> Layer<S> for TrackCalls {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            calls: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    calls: TrackCalls,
}

/// A call that is counted until its answer is handed over.
#[derive(Debug)]
struct Call {
    calls: TrackCalls,
    /// `None` for a path that names no RPC.
    method: Option<Method>,
    started: Instant,
    /// The status, once the answer's headers or trailers carried it.
    code: Option<tonic::Code>,
    /// The body was read to its end.
    ended: bool,
    /// Still counted in `working`: the answer is not ready yet.
    working: bool,
}

impl Call {
    /// The answer is ready: the call's slot of the limit is free.
    fn done_working(&mut self) {
        if std::mem::take(&mut self.working) {
            self.calls.working.leave();
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.done_working();
        self.calls.in_flight.leave();
        let metrics = &self.calls.metrics;
        metrics.call_left();
        let code = match (self.code, self.ended) {
            (Some(code), _) => code,
            (None, true) => tonic::Code::Unknown,
            // Dropped before its end: the client went away.
            (None, false) => tonic::Code::Cancelled,
        };
        metrics.call(self.method, code, self.started.elapsed());
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Tracked<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<TrackedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let method = Method::from_path(request.uri().path());
        if let Some(method) = method {
            // For the layers inside, which see the request without its path
            // (the token check logs it).
            request.extensions_mut().insert(method);
        }
        let started = Instant::now();
        if !self.calls.working.try_enter(self.calls.limit) {
            let limit = self.calls.limit;
            tracing::debug!(
                method = Method::label(method),
                limit,
                "call refused: too many in flight"
            );
            self.calls
                .metrics
                .call(method, tonic::Code::ResourceExhausted, started.elapsed());
            let refused = tonic::Status::resource_exhausted(format!(
                "sessiond has {limit} calls in flight, its limit (--max-in-flight); retry shortly"
            ))
            .into_http::<()>();
            return Box::pin(async move {
                Ok(refused.map(|()| TrackedBody {
                    body: None,
                    call: None,
                }))
            });
        }
        self.calls.in_flight.enter();
        self.calls.metrics.call_entered();
        let mut call = Call {
            calls: self.calls.clone(),
            method,
            started,
            code: None,
            ended: false,
            working: true,
        };
        let response = self.inner.call(request);
        let timeout = self.calls.timeout;
        Box::pin(async move {
            let answered = async {
                split_turns::wait_for_turn().await;
                response.await
            };
            let Ok(response) = tokio::time::timeout(timeout, answered).await else {
                // Dropping the handler's future ends the call's work.
                tracing::debug!(
                    method = Method::label(method),
                    "call cut off: no answer within the request timeout"
                );
                call.code = Some(tonic::Code::DeadlineExceeded);
                call.done_working();
                let late = tonic::Status::deadline_exceeded(format!(
                    "no answer within {}, the server's limit (--request-timeout)",
                    humantime::format_duration(timeout)
                ))
                .into_http::<()>();
                return Ok(late.map(|()| TrackedBody {
                    body: None,
                    call: Some(call),
                }));
            };
            let response = response?;
            call.done_working();
            call.code = status_of(response.headers());
            Ok(response.map(|body| TrackedBody {
                body: Some(body),
                call: Some(call),
            }))
        })
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Tracked<S> {
    const NAME: &'static str = S::NAME;
}

/// A response body that keeps its call counted until it is dropped, and
/// reads the status from its trailers; empty for a refused call, whose
/// status is in its headers.
#[derive(Debug)]
pub(crate) struct TrackedBody<B> {
    body: Option<B>,
    call: Option<Call>,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Some(body) = &mut self.body else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if let Some(call) = &mut self.call {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(code) = frame.trailers_ref().and_then(status_of) {
                        call.code = Some(code);
                    }
                }
                Poll::Ready(None) => call.ended = true,
                Poll::Ready(Some(Err(_))) | Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(tonic::Code::from_i32(value.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_never_passed_and_slots_come_back() {
        let in_flight = InFlight::default();
        assert!(in_flight.try_enter(2));
        assert!(in_flight.try_enter(2));
        assert!(!in_flight.try_enter(2));
        assert_eq!(in_flight.count(), 2);
        in_flight.leave();
        assert_eq!(in_flight.count(), 1);
        assert!(in_flight.try_enter(2));
    }
}
