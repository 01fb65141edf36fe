//! The dashboard's server (`--dashboard [ADDR]`, default `127.0.0.1:5665` as k6's): the page
//! and its chart code (served from the binary, nothing from a CDN), the run's messages as
//! server-sent events, loadgen's `/metrics`, and the finished runs' folders (their reports).
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /dashboard.js` | its charts and their updating |
//! | `GET /events` | `hello`, the run so far, then each message as it comes |
//! | `GET /metrics` | Prometheus' text format ([`super::metrics`]) |
//! | `GET /results/{n}/{path}` | a file of the n-th finished folder |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use futures::StreamExt as _;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Live, Message};

/// Where the dashboard listens unless told.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5665";

const PAGE: &str = include_str!("assets/dashboard.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");

/// A running dashboard.
#[derive(Debug)]
pub struct Dashboard {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
#[error("the dashboard cannot listen on {addr}: {source}")]
pub struct DashboardError {
    addr: SocketAddr,
    source: std::io::Error,
}

impl Dashboard {
    /// Listens on `addr` and serves `live` until [`stop`](Self::stop).
    pub async fn start(addr: SocketAddr, live: Live) -> Result<Self, DashboardError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| DashboardError { addr, source })?;
        let addr = listener.local_addr().map_err(|source| DashboardError { addr, source })?;
        let shutdown = CancellationToken::new();
        let app = router(live, shutdown.clone());
        let task = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
            })
        };
        Ok(Self { addr, shutdown, task })
    }

    /// The page's address.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ends every event stream and stops serving (at most a second's wait).
    pub async fn stop(self) {
        self.shutdown.cancel();
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(1), &mut task).await.is_err() {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct App {
    live: Live,
    shutdown: CancellationToken,
}

fn router(live: Live, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/dashboard.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/results/{index}/{*path}", get(result_file))
        .with_state(App { live, shutdown })
}

async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (history, receiver) = app.live.subscribe();
    let hello = std::iter::once(Event::default().event("hello").data("{}"));
    let replay = futures::stream::iter(hello.chain(history.into_iter().map(|m| event(&m))).map(Ok));
    let shutdown = app.shutdown;
    let coming = futures::stream::unfold(receiver, move |mut receiver| {
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                // What was published before the shutdown (the run's end) is sent first.
                biased;
                received = receiver.recv() => match received {
                    Ok(message) => Some((Ok(event(&message)), receiver)),
                    // Too far behind: end the stream; the browser reconnects and is replayed
                    // the run so far.
                    Err(RecvError::Lagged(_) | RecvError::Closed) => None,
                },
                () = shutdown.cancelled() => None,
            }
        }
    });
    Sse::new(replay.chain(coming)).keep_alive(KeepAlive::default())
}

fn event(message: &Message) -> Event {
    Event::default().event(message.event).data(&*message.data)
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.live.prometheus_text())
}

async fn result_file(State(app): State<App>, UrlPath((index, path)): UrlPath<(usize, String)>) -> Response {
    let Some(folder) = app.live.served_folder(index) else {
        return (StatusCode::NOT_FOUND, "no such results folder").into_response();
    };
    let Some(file) = inside(&folder, &path) else {
        return (StatusCode::NOT_FOUND, "not a file of the results folder").into_response();
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&file))], bytes).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// `path` under `folder`, if it names a file below it (no `..`, no absolute path).
fn inside(folder: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path);
    relative.components().all(|c| matches!(c, Component::Normal(_))).then(|| folder.join(relative))
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("css") => "text/css",
        _ => "text/plain; charset=utf-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_below_the_folder_are_served() {
        let folder = Path::new("/r/run");
        assert_eq!(inside(folder, "report/a.html"), Some(PathBuf::from("/r/run/report/a.html")));
        assert_eq!(inside(folder, "../secret"), None);
        assert_eq!(inside(folder, "report/../../x"), None);
        assert_eq!(inside(folder, "/etc/passwd"), None);
    }
}
