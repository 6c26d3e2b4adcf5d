//! The node's HTTP endpoint: `GET /metrics`, `GET /health`, `GET /api/v5/status`, plus the
//! API routes the broker hands in (`crate::evacuation::api`). `/health` and `/api/v5/status`
//! are open (as EMQX's `/status`); `/metrics` is open unless `listeners.metrics_require_key`
//! installs a guard ([`HttpState::with_metrics_guard`]).
//!
//! Owns the routes and their response bodies. The process-wide Prometheus recorder and the
//! metric descriptions live in [`recorder`]. It must never touch MQTT sessions or the
//! cluster tables: everything it reports comes from [`HttpState`] (a connection counter,
//! the core link's health, the scrape-time gauges of `crate::node_metrics` and the
//! Prometheus handle), so serving a scrape never contends with the broker's locks.
//!
//! `GET /health` answers 200 while the node serves clients and 503 once it is stopping.
//! Its body names the link to the core group (`core_link`: `following`, `lagging` or
//! `down`, with the core, the indexes and the lag): a node whose link is lagging or down is
//! degraded but still serves its clients (local and forwarded messages flow; table writes
//! such as new subscriptions wait for a core), so it stays 200 and an operator or a load
//! balancer that wants more reads `core_link.state`.

pub mod api;
pub mod log_level;
pub mod openapi;
mod recorder;
pub mod routes;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core_link::{CoreLink, LinkHealth};
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

impl ConnectionCount for crate::ctx::Ctx {
    fn connections(&self) -> usize {
        self.admission.connections.load(Ordering::Relaxed)
    }
}

/// Something that sets gauges from its own state just before `/metrics` is rendered.
pub trait ScrapeGauges: Send + Sync + 'static {
    /// Sets them; must not block.
    fn refresh_gauges(&self);
}

impl ScrapeGauges for crate::ctx::Ctx {
    fn refresh_gauges(&self) {
        crate::node_metrics::refresh(self);
    }
}

/// Something that knows how the link to the core group stands.
pub trait CoreLinkHealth: Send + Sync + 'static {
    /// The link's state now; must not block.
    fn core_link_health(&self) -> LinkHealth;
}

impl CoreLinkHealth for CoreLink {
    fn core_link_health(&self) -> LinkHealth {
        self.health()
    }
}

/// Checks a request to `/metrics` (`listeners.metrics_require_key`).
pub type MetricsGuard = Arc<dyn Fn(&HeaderMap) -> Result<(), api::ApiError> + Send + Sync>;

/// What the HTTP endpoint reports from.
#[derive(Clone)]
pub struct HttpState {
    /// Node name, reported by `/api/v5/status`.
    node: Arc<str>,
    /// Source of the live connection count.
    connections: Arc<dyn ConnectionCount>,
    /// Source of `/health`'s `core_link` (none: the field is left out).
    core_link: Option<Arc<dyn CoreLinkHealth>>,
    /// Sets the node's scrape-time gauges before `/metrics` is rendered.
    gauges: Option<Arc<dyn ScrapeGauges>>,
    /// When the state was created (the broker's start, near enough): uptime.
    started: Instant,
    /// Renders `/metrics`.
    prometheus: PrometheusHandle,
    /// Checks `/metrics` requests when it needs a key (none: open).
    metrics_guard: Option<MetricsGuard>,
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
            core_link: None,
            gauges: None,
            started: Instant::now(),
            prometheus: prometheus_handle(),
            metrics_guard: None,
        }
    }

    /// `/metrics` answers only requests `guard` lets through.
    pub fn with_metrics_guard(mut self, guard: MetricsGuard) -> Self {
        self.metrics_guard = Some(guard);
        self
    }

    /// Reports `link` as `core_link` in `/health`.
    pub fn with_core_link(mut self, link: Arc<dyn CoreLinkHealth>) -> Self {
        self.core_link = Some(link);
        self
    }

    /// Lets `gauges` set its gauges before each `/metrics` render.
    pub fn with_gauges(mut self, gauges: Arc<dyn ScrapeGauges>) -> Self {
        self.gauges = Some(gauges);
        self
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`, or `stopping` once shutdown began.
    status: &'static str,
    /// The link to the core group, when the state has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    core_link: Option<LinkHealth>,
}

/// Body of `/api/v5/status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = NodeStatus)]
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

/// The routes, without a listener or state, with their OpenAPI description.
fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(health))
        .routes(routes!(status))
}

/// The OpenAPI description of `/metrics`, `/health` and `/api/v5/status` (merged into the
/// API's document by [`openapi`]).
pub fn openapi_paths() -> utoipa::openapi::OpenApi {
    documented().split_for_parts().1
}

/// The routes, without a listener.
fn router(state: HttpState, shutdown: CancellationToken) -> Router {
    let (routes, _) = documented().split_for_parts();
    routes.with_state(AppState {
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

/// Every metric in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, description = "Prometheus text exposition format",
               content_type = "text/plain", body = String)))]
async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(guard) = &s.http.metrics_guard
        && let Err(e) = guard(&headers)
    {
        return e.into_response();
    }
    core_node::process_metrics::refresh();
    if let Some(g) = &s.http.gauges {
        g.refresh_gauges();
    }
    let body = s.http.prometheus.render();
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], body).into_response()
}

/// 200 while serving (whatever the core link's state: see the module doc), 503 once
/// stopping.
#[utoipa::path(get, path = "/health", tag = "status",
    responses((status = 200, description = "Serving (`core_link` says how the link to the cores stands)", body = Health),
              (status = 503, description = "Stopping", body = Health)))]
async fn health(State(s): State<AppState>) -> Response {
    let core_link = s.http.core_link.as_ref().map(|l| l.core_link_health());
    let (code, status) = if s.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping")
    } else {
        (StatusCode::OK, "ok")
    };
    (code, Json(Health { status, core_link })).into_response()
}

/// The node's name, version, uptime and live connections.
#[utoipa::path(get, path = "/api/v5/status", tag = "status",
    responses((status = 200, description = "This node", body = Status)))]
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

    /// A link that is down.
    struct Down;

    impl CoreLinkHealth for Down {
        fn core_link_health(&self) -> LinkHealth {
            LinkHealth::judge(None, 4, 9)
        }
    }

    #[tokio::test]
    async fn health_reports_a_down_core_link_and_stays_200() {
        let mut s = state();
        s.http = s.http.with_core_link(Arc::new(Down));
        let r = health(State(s)).await;
        assert_eq!(r.status(), StatusCode::OK, "a degraded node still serves");
        assert_eq!(
            body(r).await,
            r#"{"status":"ok","core_link":{"state":"down","core":null,"applied_index":4,"commit_index":9,"lag":5}}"#
        );
    }

    #[tokio::test]
    async fn status_reports_node_and_connections() {
        let Json(st) = status(State(state())).await;
        assert_eq!(st.node, "n1");
        assert_eq!(st.connections, 7);
        assert_eq!(st.version, env!("CARGO_PKG_VERSION"));
    }
}
