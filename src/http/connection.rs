//! The server's connections: accepting them up to a limit, timing out clients that send too
//! slowly or sit idle, answering hyper's own error responses as OperationOutcomes, and closing
//! everything by a deadline when the server stops.
//!
//! Each connection is served by hyper's HTTP/1 connection over a [`Watched`] socket, which
//! - notes when a request's head begins (its first byte) and when the server is idle between
//!   requests, so a watchdog can close a connection whose head takes longer than the header
//!   read timeout (a slow-loris client) or that sits idle longer than the keep-alive timeout;
//! - replaces the bodiless 400, 414 and 431 responses hyper writes by itself for a request it
//!   cannot parse with the same status and an OperationOutcome (the router never sees those
//!   requests).
//!
//! A request's body must arrive within the body read timeout ([`BodyDeadline`]); the handler
//! reading it then answers 408.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower_service::Service;

use crate::error::FhirError;

/// How the server treats connections; each a `signaal serve` setting (`docs/security.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest a request's head (request line and headers) may take to arrive, from its
    /// first byte (or from the connection's opening) to its end.
    pub header_read_timeout: Duration,
    /// The longest a request's body may take to arrive, from the end of its head.
    pub body_read_timeout: Duration,
    /// The longest a connection may wait for its next request.
    pub keep_alive_timeout: Duration,
    /// The most connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// After SIGTERM, how long requests in progress may take to finish before the server
    /// closes their connections and exits anyway.
    pub shutdown_timeout: Duration,
}

/// The default of `header_read_timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of `body_read_timeout`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The default of `keep_alive_timeout`.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default of `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default of `shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets the
/// requests in progress finish for up to `limits.shutdown_timeout`, and closes what is left
/// (a request cut off this way is dropped: its store transaction rolls back).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Past the limit, the next connection waits in the listen backlog.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (router, closed) = (router.clone(), closed.clone());
        connections.spawn(async move {
            connection(stream, router, limits, closed).await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "shutting down: closing the connections still open after the shutdown timeout"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// What a connection is doing, for its watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Waiting for the first byte of the next request.
    Idle = 0,
    /// Reading a request's head.
    Head = 1,
    /// Serving a request (its body is bounded by [`BodyDeadline`]).
    Busy = 2,
}

/// A connection's phase and since when (ms since the connection opened), shared by its socket,
/// its requests and its watchdog.
struct Activity {
    opened: Instant,
    phase: AtomicU8,
    since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            // A client opens a connection to send a request: its head is due from now.
            phase: AtomicU8::new(Phase::Head as u8),
            since: AtomicU64::new(0),
        }
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Idle,
            1 => Phase::Head,
            _ => Phase::Busy,
        }
    }

    fn enter(&self, phase: Phase) {
        self.since
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// How long the connection has been in its phase.
    fn elapsed(&self) -> Duration {
        let since = Duration::from_millis(self.since.load(Ordering::Acquire));
        self.opened.elapsed().saturating_sub(since)
    }
}

/// Serves one connection until it ends, its watchdog closes it, or the server's shutdown
/// deadline passes (the task is then dropped).
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut closed: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        replacement: None,
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        requests.enter(Phase::Busy);
        let request =
            request.map(|body| Body::new(BodyDeadline::new(body, limits.body_read_timeout)));
        let mut router = router.clone();
        let activity = requests.clone();
        async move {
            std::future::poll_fn(|cx| {
                <Router as Service<Request<Body>>>::poll_ready(&mut router, cx)
            })
            .await?;
            let response = router.call(request).await?;
            // The request is served once its response body has been handed to hyper.
            Ok::<_, std::convert::Infallible>(
                response.map(|body| Body::new(Finished::new(body, activity))),
            )
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // The watchdog below times heads, from their first byte.
        .header_read_timeout(None)
        .serve_connection(io, service)
        // A websocket (the subscriptions' channel) takes the connection over: hyper's future
        // ends when it is handed over, and with it this watchdog.
        .with_upgrades();
    tokio::pin!(conn);
    let tick = (limits.header_read_timeout.min(limits.keep_alive_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut watchdog = tokio::time::interval(tick);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = closed.changed(), if !shutting_down => {
                if changed.is_err() || *closed.borrow() {
                    shutting_down = true;
                    // Idle connections close now, busy ones after their response.
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = watchdog.tick() => {
                let late = match activity.phase() {
                    Phase::Head => activity.elapsed() > limits.header_read_timeout,
                    Phase::Idle => activity.elapsed() > limits.keep_alive_timeout,
                    Phase::Busy => false,
                };
                if late {
                    tracing::debug!(phase = ?activity.phase(), "closing a connection that timed out");
                    return;
                }
            }
        }
    }
}

/// A response body that marks the connection idle once it has been read to its end (or
/// dropped).
struct Finished {
    inner: Body,
    activity: Option<Arc<Activity>>,
}

impl Finished {
    fn new(inner: Body, activity: Arc<Activity>) -> Self {
        Finished {
            inner,
            activity: Some(activity),
        }
    }

    fn finish(&mut self) {
        if let Some(activity) = self.activity.take() {
            activity.enter(Phase::Idle);
        }
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.finish();
    }
}

impl hyper::body::Body for Finished {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The error of a request body that did not arrive within the body read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// A request body that fails with [`BodyTimedOut`] once its time is up.
struct BodyDeadline {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl BodyDeadline {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        BodyDeadline {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl hyper::body::Body for BodyDeadline {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether reading a body failed because it did not arrive in time.
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(BodyTimedOut(timeout)) = e.downcast_ref::<BodyTimedOut>() {
            return Some(*timeout);
        }
        cause = e.source();
    }
    None
}

/// A connection's socket, watched: reads mark the start of a request's head, and hyper's own
/// error responses are replaced by OperationOutcomes.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// The response written instead of hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl Watched {
    /// Writes what is left of the replacement response.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, written)) = &mut self.replacement {
            while *written < bytes.len() {
                let n = std::task::ready!(
                    Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..])
                )?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && self.activity.phase() == Phase::Idle {
            self.activity.enter(Phase::Head);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacement.is_none() && self.activity.phase() != Phase::Busy {
            if let Some(error) = automatic_response(buf) {
                self.replacement = Some((render(&error), 0));
            }
        }
        if self.replacement.is_some() {
            // The rest of hyper's response is replaced too.
            std::task::ready!(self.poll_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The error behind a response hyper writes by itself (no request reached the router): the
/// status line of one of its automatic parse-error responses, which have no body.
fn automatic_response(written: &[u8]) -> Option<FhirError> {
    let head = std::str::from_utf8(written.get(..written.len().min(512))?).ok()?;
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let bodiless = head
        .to_ascii_lowercase()
        .contains("\r\ncontent-length: 0\r\n");
    if !bodiless {
        return None;
    }
    Some(match status {
        "400" => FhirError::MalformedRequest(
            "The request line or a header is malformed: this is not an HTTP/1.1 request the server can read"
                .into(),
        ),
        "414" => FhirError::UriTooLong(
            "The request URL is longer than the server reads; send a long search as POST [type]/_search"
                .into(),
        ),
        "431" => FhirError::HeadersTooLarge(
            "The request's headers are larger, or more, than the server reads".into(),
        ),
        _ => return None,
    })
}

/// A complete response for `error`, closing the connection.
fn render(error: &FhirError) -> Vec<u8> {
    let body = serde_json::to_vec(&error.into_outcome()).unwrap_or_default();
    let status = error.status();
    let mut response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/fhir+json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_parse_errors_become_operation_outcomes() {
        for (written, status) in [
            (
                &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n"[..],
                400,
            ),
            (
                b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n",
                414,
            ),
            (
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
                431,
            ),
        ] {
            let error = automatic_response(written).expect("recognised");
            assert_eq!(error.status().as_u16(), status);
            let rendered = String::from_utf8(render(&error)).unwrap();
            assert!(rendered.starts_with(&format!("HTTP/1.1 {status} ")));
            assert!(rendered.contains("\"resourceType\":\"OperationOutcome\""));
        }
    }

    #[test]
    fn responses_with_a_body_are_left_alone() {
        assert!(
            automatic_response(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 120\r\n\r\n")
                .is_none()
        );
        assert!(automatic_response(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(automatic_response(b"0\r\n\r\n").is_none());
    }
}
