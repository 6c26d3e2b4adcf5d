//! The node's HTTP endpoint: `GET /metrics`, `GET /health`, `GET /api/v5/status`, plus the
//! API routes the broker hands in (`crate::evacuation::api`).
//!
//! Owns the routes and their response bodies. The process-wide Prometheus recorder and the
//! metric descriptions live in [`recorder`]. It must never touch MQTT sessions or the
//! cluster tables: everything it reports comes from [`HttpState`] (a connection counter and
//! the Prometheus handle), so serving a scrape never contends with the broker's locks.

mod recorder;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use recorder::{describe_all, prometheus_handle};

/// `Content-Type` of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Something that knows how many MQTT connections are live.
pub trait ConnectionCount: Send + Sync + 'static {
    /// Live MQTT connections (TCP + WebSocket).
    fn connections(&self) -> usize;
}

impl ConnectionCount for AtomicUsize {
    fn connections(&self) -> usize {
        self.load(Ordering::Relaxed)
    }
}

impl ConnectionCount for crate::broker::Ctx {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// What the HTTP endpoint reports from.
#[derive(Clone)]
pub struct HttpState {
    /// Node name, reported by `/api/v5/status`.
    node: Arc<str>,
    /// Source of the live connection count.
    connections: Arc<dyn ConnectionCount>,
    /// When the state was created (the broker's start, near enough): uptime.
    started: Instant,
    /// Renders `/metrics`.
    prometheus: PrometheusHandle,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl HttpState {
    /// State for node `node`, counting connections with `connections` (the broker's `Ctx`,
    /// or an `AtomicUsize`). Installs the process-wide Prometheus recorder if needed.
    pub fn new<C: ConnectionCount>(node: impl Into<String>, connections: Arc<C>) -> Self {
        HttpState {
            node: Arc::from(node.into()),
            connections,
            started: Instant::now(),
            prometheus: prometheus_handle(),
        }
    }
}

/// Router state: the reported state plus the shutdown signal `/health` reflects.
#[derive(Clone)]
struct AppState {
    /// What the routes report.
    http: HttpState,
    /// Cancelled once the node began shutting down.
    shutdown: CancellationToken,
}

/// Body of `/health`.
#[derive(Debug, Serialize)]
struct Health {
    /// `ok`, or `stopping` once shutdown began.
    status: &'static str,
}

/// Body of `/api/v5/status`.
#[derive(Debug, Serialize)]
struct Status {
    /// Node name.
    node: String,
    /// Broker version.
    version: &'static str,
    /// Seconds since start.
    uptime_secs: u64,
    /// Live MQTT connections.
    connections: usize,
}

/// The routes, without a listener.
fn router(state: HttpState, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/api/v5/status", get(status))
        .with_state(AppState {
            http: state,
            shutdown,
        })
}

/// Serves the endpoint on `listener` until `shutdown` is cancelled; in-flight requests
/// finish first.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    api: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state, shutdown.clone()).merge(api);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics(State(s): State<AppState>) -> Response {
    let body = s.http.prometheus.render();
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], body).into_response()
}

async fn health(State(s): State<AppState>) -> Response {
    if s.shutdown.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health { status: "stopping" }),
        )
            .into_response()
    } else {
        (StatusCode::OK, Json(Health { status: "ok" })).into_response()
    }
}

async fn status(State(s): State<AppState>) -> Json<Status> {
    Json(Status {
        node: s.http.node.to_string(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: s.http.started.elapsed().as_secs(),
        connections: s.http.connections.connections(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn state() -> AppState {
        let http = HttpState::new("n1", Arc::new(AtomicUsize::new(7)));
        AppState {
            http,
            shutdown: CancellationToken::new(),
        }
    }

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn health_turns_503_once_shutdown_began() {
        let s = state();
        let ok = health(State(s.clone())).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(body(ok).await, r#"{"status":"ok"}"#);
        s.shutdown.cancel();
        let stopping = health(State(s)).await;
        assert_eq!(stopping.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(stopping).await, r#"{"status":"stopping"}"#);
    }

    #[tokio::test]
    async fn status_reports_node_and_connections() {
        let Json(st) = status(State(state())).await;
        assert_eq!(st.node, "n1");
        assert_eq!(st.connections, 7);
        assert_eq!(st.version, env!("CARGO_PKG_VERSION"));
    }
}
