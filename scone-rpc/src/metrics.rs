//! A Prometheus `/metrics` endpoint for counters kept elsewhere (cargo feature `metrics`).
//!
//! The counters stay where the program updates them (atomics, caches, stats structs);
//! each place that has some implements [`Collect`], and a scrape reads them at that
//! moment, so nothing is counted twice. [`Metrics`] names them under one prefix, renders
//! them in the OpenMetrics text format (which Prometheus reads) and serves them over
//! HTTP/1.1.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//!
//! use scone_rpc::metrics::{Collect, Metrics, Samples};
//!
//! #[derive(Default)]
//! struct Counters {
//!     requests: AtomicU64,
//!     sessions: AtomicU64,
//! }
//!
//! impl Collect for Counters {
//!     fn collect(&self, samples: &mut Samples<'_>) {
//!         // A counter's sample gets `_total` appended; a gauge's name is used as is.
//!         let requests = self.requests.load(Ordering::Relaxed);
//!         samples.counter("requests", "Requests received.", requests);
//!         let sessions = self.sessions.load(Ordering::Relaxed);
//!         samples.gauge("sessions", "Sessions open now.", sessions);
//!     }
//! }
//!
//! let counters = Arc::new(Counters::default());
//! let metrics = Metrics::new("my_server").with(Arc::clone(&counters));
//! counters.requests.fetch_add(3, Ordering::Relaxed);
//!
//! let text = metrics.render();
//! assert!(text.contains("# HELP my_server_requests Requests received.\n"));
//! assert!(text.contains("\nmy_server_requests_total 3\n"));
//! assert!(text.contains("\nmy_server_sessions 0\n"));
//! assert!(text.ends_with("# EOF\n"));
//!
//! // Served on `/metrics` until `shutdown` (a signal, say) completes:
//! # async fn serve(metrics: Metrics, shutdown: impl std::future::Future) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9400").await?;
//! metrics.serve(listener, shutdown).await
//! # }
//! ```
//!
//! The endpoint answers `GET` and `HEAD` on `/metrics` (and `/`) with [`render`]'s text
//! ([`CONTENT_TYPE_TEXT`]), other methods there with 405, other paths with 404. It
//! serves at most [`MAX_CONNECTIONS`] scrapers at once and closes one whose request
//! headers take longer than [`HEADER_TIMEOUT`].
//!
//! [`render`]: Metrics::render

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Most scrapers served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 16;

/// How long a scraper may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping endpoint lets scrapes in progress finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The content type of the text [`Metrics::render`] makes.
pub const CONTENT_TYPE_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Counters that a scrape reads: implemented by each place that keeps some.
///
/// [`collect`](Self::collect) runs at every scrape (and [`Metrics::render`]), on the
/// scraper's task: it should only read what is already counted (atomics, a length kept
/// up to date under a short lock), never block.
pub trait Collect: Send + Sync + 'static {
    /// Writes the current value of each metric to `samples`.
    fn collect(&self, samples: &mut Samples<'_>);
}

/// Counters shared with the code that updates them.
impl<T: Collect + ?Sized> Collect for Arc<T> {
    fn collect(&self, samples: &mut Samples<'_>) {
        (**self).collect(samples);
    }
}

/// Where [`Collect::collect`] writes the metrics of one scrape.
///
/// Names are written without the [`Metrics`]' prefix, which is added with a `_`
/// (`requests` under `my_server` is `my_server_requests`); help texts are trimmed.
pub struct Samples<'a> {
    encoder: DescriptorEncoder<'a>,
    /// The first write that failed, after which nothing more is written.
    result: fmt::Result,
}

impl fmt::Debug for Samples<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Samples").finish_non_exhaustive()
    }
}

impl Samples<'_> {
    /// A counter: a count that only goes up. Its sample is named `name` followed by
    /// `_total`.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.write(name, help, ConstCounter::new(value));
    }

    /// A gauge: a value now, which may go up or down.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.write(name, help, ConstGauge::new(value));
    }

    fn write(&mut self, name: &str, help: &str, metric: impl EncodeMetric) {
        if self.result.is_err() {
            return;
        }
        self.result = self
            .encoder
            .encode_descriptor(name, help.trim(), None, metric.metric_type())
            .and_then(|descriptor| metric.encode(descriptor));
    }
}

/// A set of [`Collect`] sources under one name prefix: rendered as text, or served on
/// `/metrics`. Cloning shares the sources.
#[derive(Clone)]
pub struct Metrics {
    prefix: Arc<str>,
    sources: Vec<Arc<dyn Collect>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("prefix", &self.prefix)
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl Metrics {
    /// No metrics yet; every name will start with `prefix` and `_` (say `scone_relay`:
    /// `scone_relay_requests_total`), or nothing if `prefix` is empty.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
            sources: Vec::new(),
        }
    }

    /// Adds `source`: its metrics follow those of the sources added before it.
    pub fn with(mut self, source: impl Collect) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// The metrics now, in the OpenMetrics text format (which Prometheus reads), ending
    /// with `# EOF`.
    pub fn render(&self) -> String {
        let mut registry = if self.prefix.is_empty() {
            Registry::default()
        } else {
            Registry::with_prefix(&*self.prefix)
        };
        for source in &self.sources {
            registry.register_collector(Box::new(Adapter(Arc::clone(source))));
        }
        let mut text = String::new();
        // Writing to a String cannot fail, and the collectors' own writes only fail when
        // the writer does.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!(%error, "could not render the metrics");
        }
        text
    }

    /// Serves `GET /metrics` on `listener` until `shutdown` completes; then stops
    /// accepting, lets scrapes in progress finish (for a moment) and returns.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future) -> io::Result<()> {
        let metrics = Arc::new(self);
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .keep_alive(true);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pass, do not spin.
                        tracing::warn!(%error, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            while connections.try_join_next().is_some() {}
            let metrics = Arc::clone(&metrics);
            let mut stop = stop_rx.clone();
            let connection = http.serve_connection(
                TokioIo::new(stream),
                service_fn(move |request| {
                    let response = metrics.respond(&request);
                    async move { Ok::<_, Infallible>(response) }
                }),
            );
            connections.spawn(async move {
                let _permit = permit;
                tokio::pin!(connection);
                let served = tokio::select! {
                    served = connection.as_mut() => served,
                    // Only the stop is ever sent: any change means stop.
                    _ = stop.changed() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "metrics: connection ended with an error");
                }
            });
        }
        let _ = stop_tx.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            connections.abort_all();
        }
        Ok(())
    }

    /// The answer to one HTTP request.
    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, body) = match (request.method(), request.uri().path()) {
            (&Method::GET | &Method::HEAD, "/metrics" | "/") => (StatusCode::OK, self.render()),
            (_, "/metrics" | "/") => (
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD\n".to_owned(),
            ),
            _ => (StatusCode::NOT_FOUND, "try /metrics\n".to_owned()),
        };
        let content_type = if status == StatusCode::OK {
            CONTENT_TYPE_TEXT
        } else {
            "text/plain; charset=utf-8"
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }
}

/// One source as prometheus-client's collector.
struct Adapter(Arc<dyn Collect>);

impl fmt::Debug for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adapter").finish_non_exhaustive()
    }
}

impl Collector for Adapter {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut samples = Samples {
            encoder,
            result: Ok(()),
        };
        self.0.collect(&mut samples);
        samples.result
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// Every await in these tests is bounded by this.
    const BOUND: Duration = Duration::from_secs(10);

    async fn bounded<F: Future>(future: F) -> F::Output {
        tokio::time::timeout(BOUND, future)
            .await
            .expect("took too long")
    }

    #[derive(Default)]
    struct Counters {
        requests: AtomicU64,
        open: AtomicU64,
    }

    impl Collect for Counters {
        fn collect(&self, samples: &mut Samples<'_>) {
            let requests = self.requests.load(Ordering::Relaxed);
            samples.counter("requests", " Requests received.\n", requests);
            samples.gauge(
                "open",
                "Connections open.",
                self.open.load(Ordering::Relaxed),
            );
        }
    }

    struct Other;

    impl Collect for Other {
        fn collect(&self, samples: &mut Samples<'_>) {
            samples.counter("other", "Another source's count.", 7);
        }
    }

    #[test]
    fn render_reads_each_source_at_that_moment() {
        let counters = Arc::new(Counters::default());
        let metrics = Metrics::new("test").with(Arc::clone(&counters)).with(Other);
        counters.requests.store(5, Ordering::Relaxed);
        counters.open.store(2, Ordering::Relaxed);
        let text = metrics.render();
        assert_eq!(
            text,
            "# HELP test_requests Requests received.\n\
             # TYPE test_requests counter\n\
             test_requests_total 5\n\
             # HELP test_open Connections open.\n\
             # TYPE test_open gauge\n\
             test_open 2\n\
             # HELP test_other Another source's count.\n\
             # TYPE test_other counter\n\
             test_other_total 7\n\
             # EOF\n"
        );
        counters.requests.fetch_add(1, Ordering::Relaxed);
        assert!(metrics
            .clone()
            .render()
            .contains("\ntest_requests_total 6\n"));
    }

    #[test]
    fn no_prefix_and_no_sources() {
        assert_eq!(Metrics::new("").render(), "# EOF\n");
        let text = Metrics::new("").with(Other).render();
        assert!(text.contains("\nother_total 7\n"), "{text}");
    }

    /// Sends `request` (a whole HTTP/1.1 request) to `addr` and reads the answer until
    /// the server closes.
    async fn http(addr: SocketAddr, request: &str) -> String {
        let mut stream = bounded(TcpStream::connect(addr)).await.unwrap();
        bounded(stream.write_all(request.as_bytes())).await.unwrap();
        let mut answer = String::new();
        bounded(stream.read_to_string(&mut answer)).await.unwrap();
        answer
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_get_refuses_the_rest_and_stops() {
        let counters = Arc::new(Counters::default());
        counters.requests.store(3, Ordering::Relaxed);
        let metrics = Metrics::new("test").with(Arc::clone(&counters));
        let listener = bounded(TcpListener::bind("127.0.0.1:0")).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(metrics.serve(listener, stopped));

        let get = "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n";
        let answer = http(addr, get).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        let type_line = format!("content-type: {CONTENT_TYPE_TEXT}\r\n");
        assert!(answer.contains(&type_line), "{answer}");
        let (_, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(body.contains("\ntest_requests_total 3\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");

        let root = http(
            addr,
            "GET / HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
        );
        assert!(root.await.starts_with("HTTP/1.1 200 OK\r\n"));
        let head = "HEAD /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n";
        let head = http(addr, head).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "no body after HEAD: {head}");

        let elsewhere = http(
            addr,
            "GET /x HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
        );
        let elsewhere = elsewhere.await;
        assert!(elsewhere.starts_with("HTTP/1.1 404 "), "{elsewhere}");
        assert!(elsewhere.contains("content-type: text/plain; charset=utf-8\r\n"));
        let post =
            "POST /metrics HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let post = http(addr, post).await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        assert!(post.contains("allow: GET, HEAD\r\n"), "{post}");
        let garbage = http(addr, "\x00\x01 not http at all\r\n\r\n").await;
        assert!(
            garbage.is_empty() || garbage.starts_with("HTTP/1.1 400 "),
            "{garbage}"
        );

        // A scraper that connected and sent nothing does not hold the stop up for long.
        let _idle = bounded(TcpStream::connect(addr)).await.unwrap();
        let _ = stop.send(());
        let stopping = tokio::time::Instant::now();
        bounded(served).await.unwrap().unwrap();
        assert!(stopping.elapsed() < SHUTDOWN_GRACE + Duration::from_secs(2));
    }
}
