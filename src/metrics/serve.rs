//! The Prometheus endpoint: `GET /metrics` on `[metrics] listen`, the
//! registry in the text exposition format (`prometheus::TextEncoder`),
//! over hyper's HTTP/1 server. Any other path is 404.
//!
//! The listener is bound at start-up, so an address in use is an error
//! before anything runs; after that the endpoint never fails the
//! pipeline: a connection that errs or dawdles (a header not read within
//! 10 s, a response not done in 30 s) is dropped alone.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::Encoder;
use tokio::net::TcpListener;

use super::Metrics;
use crate::task::Background;

/// The endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("[metrics] listen = \"{addr}\": cannot listen there: {source}")]
pub struct ServeError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` and serves `metrics` until the returned task is dropped.
pub async fn start(addr: SocketAddr, metrics: &'static Metrics) -> Result<Background, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(listen = %bound, "Prometheus metrics at http://{bound}/metrics");
    Ok(Background::spawn(accept(listener, metrics)))
}

async fn accept(listener: TcpListener, metrics: &'static Metrics) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // e.g. out of file descriptors: try again shortly
                tracing::debug!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| async move {
                Ok::<_, Infallible>(respond(&req, metrics))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(Duration::from_secs(30), conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "metrics endpoint: connection failed"),
                Err(_) => tracing::debug!("metrics endpoint: connection timed out"),
            }
        });
    }
}

fn respond(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "text/plain", "GET /metrics\n".into());
    }
    let encoder = prometheus::TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&metrics.registry().gather(), &mut body) {
        Ok(()) => plain(StatusCode::OK, encoder.format_type(), body),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string().into_bytes(),
        ),
    }
}

fn plain(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_the_registry_and_nothing_else() {
        static M: LazyLock<Metrics> = LazyLock::new(Metrics::new);
        M.retried("writer", "deadlock");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listener = TcpListener::bind(any).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _task = Background::spawn(accept(listener, &M));
        let ok = get(addr, "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(
            ok.contains(r#"reshard_retries_total{reason="deadlock",stage="writer"} 1"#),
            "{ok}"
        );
        let missing = get(addr, "/").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        // an address in use is an error naming the key
        let e = start(addr, &M).await.unwrap_err();
        assert!(e.to_string().contains("[metrics] listen"), "{e}");
    }
}
