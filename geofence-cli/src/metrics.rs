//! The metrics endpoint: the counters as Prometheus text over HTTP, served by hyper on a
//! current-thread tokio runtime of its own thread, so it never competes with the queue workers
//! and many slow or idle clients cost it memory, not time.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections at once (more are closed as they come), a
//! request's headers must arrive within [`HEADER_TIMEOUT`], and a connection lives at most
//! [`CONNECTION_LIMIT`], whatever the client does.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

/// Connections served at once (a scraper needs one): well below the 1,024 file descriptors a
/// process has by default, so that idle clients can never starve a reload of the descriptor it
/// opens its files with. Connections beyond it are closed as they are accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send its request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection may last in all.
pub const CONNECTION_LIMIT: Duration = Duration::from_secs(10);

/// Serves `render()` as `GET /metrics` on `listener`, from a thread of its own.
pub fn spawn(listener: TcpListener, render: impl Fn() -> String + Send + Sync + 'static) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => serve(listener, Arc::new(render)).await,
                Err(error) => log::error!("metrics: cannot serve: {error}"),
            }
        })
    })?;
    Ok(())
}

async fn serve(listener: tokio::net::TcpListener, render: Arc<impl Fn() -> String + Send + Sync + 'static>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                log::warn!("metrics: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else { continue };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&request, render.as_ref());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, connection).await;
            drop(permit);
        });
    }
}

/// `GET /metrics` (or `HEAD`) gets the counters; another method there 405, any other path 404.
fn respond(request: &Request<Incoming>, render: &impl Fn() -> String) -> Response<Full<Bytes>> {
    let status = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => StatusCode::OK,
        (_, "/metrics") => StatusCode::METHOD_NOT_ALLOWED,
        _ => StatusCode::NOT_FOUND,
    };
    let body = if status == StatusCode::OK { render() } else { format!("{status}\n") };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let content_type = if status == StatusCode::OK { "text/plain; version=0.0.4" } else { "text/plain" };
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}
