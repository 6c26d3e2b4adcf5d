//! Validation of the flags into a [`Plan`] for this process (see the parent module).

use std::time::Duration;

use anyhow::{Context, bail, ensure};

use crate::endpoint::check_host;
use crate::plan::{Job, Plan, PubSpec, StormSpec, SubSpec, share};
use crate::session::ClientOpts;
use crate::wire::{MARK_LEN, MqttVersion};

use super::*;

impl CommonArgs {
    /// Where this process stands (`--worker-of`, `--workers`).
    pub fn seat(&self) -> anyhow::Result<Seat> {
        ensure!(self.workers >= 1, "--workers must be at least 1");
        match self.worker_of {
            Some(k) => {
                ensure!(
                    k < self.workers,
                    "--worker-of {k} with --workers {}",
                    self.workers
                );
                Ok(Seat { k, n: self.workers })
            }
            None => Ok(Seat::ALONE),
        }
    }

    /// The client options (TLS files are read here).
    pub fn client_opts(&self) -> anyhow::Result<ClientOpts> {
        let version = MqttVersion::from_level(self.mqtt_version).context("-V must be 3, 4 or 5")?;
        if !version.is_v5() {
            ensure!(
                self.session_expiry.is_none(),
                "-x (session expiry) needs -V 5"
            );
            ensure!(
                self.password.is_none() || self.username.is_some(),
                "-P needs -u before MQTT 5"
            );
        }
        Ok(ClientOpts {
            version,
            keep_alive: self.keepalive,
            clean_start: self.clean,
            session_expiry: self.session_expiry,
            username: self.username.clone(),
            password: self.password.clone(),
            transport: self.transport.transport()?,
            timeout: secs(self.timeout, "timeout")?,
            allow_remote: self.allow_remote,
            follow_redirects: !self.no_redirect,
        })
    }

    /// The plan of `job` for this process (its seat's share of the clients and rates).
    pub fn plan(&self, job: Job) -> anyhow::Result<Plan> {
        ensure!(self.count > 0, "-c must be at least 1");
        let seat = self.seat()?;
        ensure!(
            self.workers <= self.count || self.worker_of.is_some(),
            "--workers {} is more than -c {}",
            self.workers,
            self.count
        );
        let endpoints = parse_hosts(&self.host, self.port)?;
        for e in &endpoints {
            check_host(&e.host, self.allow_remote)?;
        }
        let opts = self.client_opts()?;
        if opts.version == MqttVersion::V31 {
            let longest = format!("{}_{}_{}", self.prefix, job.name(), self.count - 1);
            ensure!(
                longest.len() <= 23,
                "MQTT 3.1 client ids are at most 23 bytes ({longest:?}): shorten --prefix"
            );
        }
        let duration = self.duration.map(|d| secs(d, "duration")).transpose()?;
        let rate = match self.rate {
            Some(r) => {
                ensure!(r.is_finite() && r > 0.0, "--rate must be positive");
                Some(r)
            }
            None if self.interval == 0 => None,
            None => Some(1000.0 / self.interval as f64),
        };
        let clients = match (&self.worker_range, seat) {
            (Some(text), _) => parse_range(text)?,
            (None, seat) => share(self.count, seat.k, seat.n),
        };
        ensure!(
            clients.end <= self.count && clients.start <= clients.end,
            "--worker-range outside -c"
        );
        let job = match job {
            Job::Storm(mut spec) => {
                spec.drop_rate = spec.drop_rate.map(|r| r / seat.n as f64);
                Job::Storm(spec)
            }
            other => other,
        };
        Ok(Plan {
            job,
            endpoints,
            opts,
            clients,
            total_clients: self.count,
            connect_rate: rate.map(|r| r / seat.n as f64),
            prefix: self.prefix.clone(),
            duration,
            run_tag: self.run_tag.unwrap_or_else(random_tag),
            broker_pids: self.broker_pid.clone(),
        })
    }
}

impl ConnArgs {
    /// The plan of this `conn`.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        ensure!(
            self.common.duration.is_some(),
            "conn needs --duration (a run must end by itself)"
        );
        self.common.plan(Job::Conn)
    }
}

impl SubArgs {
    /// The plan of this `sub`.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        ensure!(
            self.common.duration.is_some() || self.limit.is_some(),
            "sub needs --duration or -L (a run must end by itself)"
        );
        ensure!(self.limit != Some(0), "-L must be at least 1");
        self.common.plan(Job::Sub(SubSpec {
            topic: self.topic.clone(),
            qos: self.qos,
            limit: self.limit,
        }))
    }
}

impl PubArgs {
    /// The plan of this `pub`.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        ensure!(
            self.common.duration.is_some() || self.limit.is_some(),
            "pub needs --duration or -L (a run must end by itself)"
        );
        ensure!(self.limit != Some(0), "-L must be at least 1");
        ensure!(
            self.size >= MARK_LEN,
            "-s must be at least {MARK_LEN} (the payload mark)"
        );
        ensure!(self.inflight >= 1, "-F must be at least 1");
        ensure!(
            !self.topic.contains(['#', '+']),
            "-t {:?}: a topic name has no wildcards",
            self.topic
        );
        self.common.plan(Job::Pub(PubSpec {
            topic: self.topic.clone(),
            qos: self.qos,
            size: self.size,
            interval: Duration::from_millis(self.interval_of_msg),
            limit: self.limit,
            inflight: self.inflight,
        }))
    }
}

impl StormArgs {
    /// The plan of this `storm`.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        if self.common.duration.is_some() {
            bail!("storm is bounded by --cycles; --duration does not apply");
        }
        if let Some(r) = self.drop_rate {
            ensure!(r.is_finite() && r > 0.0, "--drop-rate must be positive");
        }
        ensure!(
            self.hold >= 0.0 && self.hold.is_finite(),
            "--hold must be >= 0"
        );
        self.common.plan(Job::Storm(StormSpec {
            cycles: self.cycles,
            drop_rate: self.drop_rate,
            hold: Duration::from_secs_f64(self.hold),
            retries: self.retries,
        }))
    }
}
