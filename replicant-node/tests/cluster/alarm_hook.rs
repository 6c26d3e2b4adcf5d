//! An HTTP server standing in for an alarm webhook receiver: it records every request's
//! JSON body and `Authorization` header, and answers 500 to the first `fail_first`
//! requests (to prove the webhook retries), 200 afterwards.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::wait_until;
use crate::harness::WAIT;

/// One request received: (`Authorization` header, JSON body).
pub type Received = (Option<String>, Value);

/// What the server shares with its handler.
#[derive(Clone, Default)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    fail_left: Arc<Mutex<usize>>,
}

/// A running receiver; stops when dropped.
pub struct Hook {
    addr: SocketAddr,
    shared: Shared,
    stop: CancellationToken,
}

impl Hook {
    /// Binds 127.0.0.1:0 and serves; the first `fail_first` requests get a 500.
    pub async fn start(fail_first: usize) -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hook");
        let addr = listener.local_addr().expect("hook addr");
        let shared = Shared::default();
        *shared.fail_left.lock() = fail_first;
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Hook { addr, shared, stop }
    }

    /// The URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().clone()
    }

    /// Waits (up to [`WAIT`]) until `copies` requests came with an `event` body for alarm
    /// `name`; that body.
    pub async fn wait_event(&self, event: &str, name: &str, copies: usize) -> Value {
        let matches = |r: &Received| r.1["event"] == event && r.1["name"] == name;
        let count = || self.received().iter().filter(|r| matches(r)).count();
        let seen = wait_until(WAIT, || count() >= copies).await;
        assert!(
            seen,
            "not {copies} x {event} for {name}: got {:?}",
            self.received()
        );
        let all = self.received();
        let body = all
            .iter()
            .find(|r| matches(r))
            .map(|r| r.1.clone())
            .unwrap_or_default();
        assert!(
            all.iter().filter(|r| matches(r)).all(|r| r.1 == body),
            "the same body each time"
        );
        body
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn receive(State(s): State<Shared>, headers: HeaderMap, body: String) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
    s.received.lock().push((auth, json));
    let mut left = s.fail_left.lock();
    if *left > 0 {
        *left -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}
