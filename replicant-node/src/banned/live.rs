//! Live connections against new bans: an index of this node's connected clients (client
//! id, username, address) and the task that, when the replica applies a ban, closes every
//! live connection it matches (5.0: DISCONNECT 0x98 Administrative action, as EMQX's kick;
//! 3.1.1: the socket is closed). A banned connection's session ends with it: the client
//! keeps nothing to resume or take over.
//!
//! Owns the index and the kick. Entries are added after a CONNECT succeeds and removed when
//! their [`LiveGuard`] drops (the connection ends, however it ends). A kick is a message on
//! the connection's control channel; it never waits on the connection. A ban by client id
//! finds its session directly; the other kinds scan the index, whose lock is held only to
//! insert, remove, or collect the matches of one ban.

use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap;
use meshmq_proto::tables::{BannedAs, BannedRow};
use meshmq_shared::metrics as m;
use meshmq_shared::tables::banned::{IpNet, in_force};
use parking_lot::Mutex;
use tokio::sync::broadcast::error::RecvError;
use tracing::info;

use crate::ctx::Ctx;
use crate::replica::BanSeen;
use crate::sessions::{ConnId, Control};

/// What a ban can match on one live connection.
#[derive(Debug, Clone)]
struct LiveConn {
    client_id: Arc<str>,
    username: Option<Arc<str>>,
    peer: IpAddr,
}

/// This node's live connections by connection id.
#[derive(Debug, Default)]
pub struct Live {
    conns: Arc<Mutex<HashMap<ConnId, LiveConn>>>,
}

/// Removes its connection from the index when dropped.
#[derive(Debug)]
pub struct LiveGuard {
    conns: Arc<Mutex<HashMap<ConnId, LiveConn>>>,
    id: ConnId,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.id);
    }
}

impl Live {
    /// Adds connection `id` (it owns the session of `client_id` now).
    pub fn insert(
        &self,
        id: ConnId,
        client_id: Arc<str>,
        username: Option<&str>,
        peer: IpAddr,
    ) -> LiveGuard {
        let conn = LiveConn {
            client_id,
            username: username.map(Arc::from),
            peer: peer.to_canonical(),
        };
        self.conns.lock().insert(id, conn);
        LiveGuard {
            conns: self.conns.clone(),
            id,
        }
    }

    /// Number of live connections indexed.
    pub fn len(&self) -> usize {
        self.conns.lock().len()
    }

    /// True when no connection is indexed.
    pub fn is_empty(&self) -> bool {
        self.conns.lock().is_empty()
    }

    /// The (connection, client id) pairs `matches` selects.
    fn select(&self, matches: impl Fn(&LiveConn) -> bool) -> Vec<(ConnId, Arc<str>)> {
        self.conns
            .lock()
            .iter()
            .filter(|(_, c)| matches(c))
            .map(|(id, c)| (*id, c.client_id.clone()))
            .collect()
    }
}

/// Whether `row` matches `conn` (`row` is in force).
fn row_matches(row: &BannedRow, net: Option<&IpNet>, conn: &LiveConn) -> bool {
    match BannedAs::try_from(row.kind) {
        Ok(BannedAs::Clientid) => *conn.client_id == *row.who,
        Ok(BannedAs::Username) => conn.username.as_deref() == Some(row.who.as_str()),
        Ok(BannedAs::Peerhost) => conn.peer.to_string() == row.who,
        Ok(BannedAs::PeerhostNet) => net.is_some_and(|n| n.contains(conn.peer)),
        _ => false,
    }
}

/// Tells connection `id` (if it still owns `client_id`'s session here) that it is banned.
/// True if it was told.
pub fn kick(ctx: &Ctx, id: ConnId, client_id: &str) -> bool {
    let Some(slot) = ctx.local.sessions.get(client_id) else {
        return false;
    };
    let control = {
        let mut inner = slot.inner.lock();
        if inner.owner != Some(id) {
            return false;
        }
        inner.control.take()
    };
    let told = control.is_some_and(|tx| tx.send(Control::Banned).is_ok());
    if told {
        metrics::counter!(m::BANNED_KICKED_TOTAL).increment(1);
    }
    told
}

/// Closes the live connections `row` matches.
fn apply_ban(ctx: &Ctx, row: &BannedRow) {
    if !in_force(row, super::now_s()) {
        return;
    }
    if row.kind == BannedAs::Clientid as i32 {
        // One session per client id: no scan (flapping bans are all of this kind).
        let owner = ctx
            .local
            .sessions
            .get(&row.who)
            .and_then(|slot| slot.inner.lock().owner);
        if let Some(id) = owner
            && kick(ctx, id, &row.who)
        {
            info!(r#as = "clientid", who = %truncated(&row.who), "ban applied: live connection closed");
        }
        return;
    }
    let net = if row.kind == BannedAs::PeerhostNet as i32 {
        IpNet::parse(&row.who).ok()
    } else {
        None
    };
    let hits = ctx
        .banned
        .live
        .select(|c| row_matches(row, net.as_ref(), c));
    let mut kicked = 0usize;
    for (id, client_id) in hits {
        kicked += usize::from(kick(ctx, id, &client_id));
    }
    if kicked > 0 {
        let who = truncated(&row.who);
        info!(r#as = super::as_label(row.kind), %who, kicked, "ban applied: live connections closed");
    }
}

/// `who` cut to 128 characters for a log line.
fn truncated(who: &str) -> String {
    who.chars().take(128).collect()
}

/// Every live connection checked against the whole table (after a snapshot, or a feed that
/// lagged).
fn rescan(ctx: &Ctx) {
    let now = super::now_s();
    // Copied out first: the index lock is not held across the replica read.
    let conns: Vec<(ConnId, LiveConn)> = {
        let conns = ctx.banned.live.conns.lock();
        conns.iter().map(|(id, c)| (*id, c.clone())).collect()
    };
    let hits: Vec<(ConnId, Arc<str>)> = ctx.tables.core.read(|t| {
        conns
            .into_iter()
            .filter(|(_, c)| {
                t.banned_match(&c.client_id, c.username.as_deref(), c.peer, now)
                    .is_some()
            })
            .map(|(id, c)| (id, c.client_id))
            .collect()
    });
    for (id, client_id) in hits {
        kick(ctx, id, &client_id);
    }
}

/// Runs until shutdown: closes the live connections of every ban the replica applies.
pub async fn watch(ctx: Arc<Ctx>) {
    let mut bans = ctx.tables.core.replica().subscribe_bans();
    // A ban applied before this task subscribed (start-up) is caught by a first rescan.
    rescan(&ctx);
    loop {
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            b = bans.recv() => match b {
                Ok(BanSeen::Added(row)) => apply_ban(&ctx, &row),
                Ok(BanSeen::Reloaded) | Err(RecvError::Lagged(_)) => rescan(&ctx),
                Err(RecvError::Closed) => return,
            },
        }
    }
}
