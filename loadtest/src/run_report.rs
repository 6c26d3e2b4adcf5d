//! The report of a `conn`/`sub`/`pub`/`storm` run or scenario phase: every figure of the
//! merged [`Figures`] plus what is derived from them (latency percentiles, rates), as JSON
//! (`--json`) and as the text summary printed at the end.
//!
//! Pure: built from figures that are already final.

use serde::{Deserialize, Serialize};

use crate::broker_usage::BrokerUsage;
use crate::figures::Figures;
use crate::hist::Percentiles;

/// One storm phase, with its latency percentiles.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CycleReport {
    /// Phase number (0 = first connect).
    pub cycle: u32,
    /// Clients connected at the end of the phase.
    pub connected: u64,
    /// Clients left unconnected after their retries.
    pub unconnected: u64,
    /// Connects per second over the phase.
    pub connects_per_sec: f64,
    /// Connect-to-CONNACK, µs.
    pub connect_latency_us: Percentiles,
    /// TLS handshakes completed in full in this phase.
    pub tls_full: u64,
    /// TLS handshakes resumed in this phase (`--tls-resume`).
    pub tls_resumed: u64,
    /// Connects per broker CPU second over the phase (`--broker-pid`).
    pub connects_per_broker_cpu_sec: Option<f64>,
}

/// One run or phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Phase name (the subcommand for a single run).
    pub name: String,
    /// `conn`, `sub`, `pub` or `storm`.
    pub command: String,
    /// `tcp`, `tls`, `ws` or `wss`.
    pub transport: String,
    /// MQTT protocol level.
    pub mqtt_version: u8,
    /// Brokers, as given.
    pub hosts: Vec<String>,
    /// Connects per second over the connect phase (connected / time to the last CONNACK).
    pub connects_per_sec: f64,
    /// PUBLISH packets written per second.
    pub published_per_sec: f64,
    /// PUBLISH packets received per second.
    pub received_per_sec: f64,
    /// Connect-to-CONNACK, µs.
    pub connect_latency_us: Percentiles,
    /// Publish-to-receive, µs.
    pub e2e_latency_us: Percentiles,
    /// Storm phases.
    pub cycles: Vec<CycleReport>,
    /// Every counter (histograms as base64 of hdrhistogram V2).
    pub figures: Figures,
    /// What the broker used over the run (`--broker-pid`).
    pub broker: Option<BrokerUsage>,
}

/// What a phase was, for the report.
#[derive(Debug, Clone)]
pub struct PhaseInfo {
    /// Name.
    pub name: String,
    /// Subcommand.
    pub command: String,
    /// Transport name.
    pub transport: String,
    /// Protocol level.
    pub mqtt_version: u8,
    /// Hosts.
    pub hosts: Vec<String>,
}

impl PhaseReport {
    /// The report of `figures`.
    pub fn new(info: PhaseInfo, figures: Figures) -> PhaseReport {
        let per_sec = |n: u64| {
            if figures.elapsed_secs > 0.0 {
                n as f64 / figures.elapsed_secs
            } else {
                0.0
            }
        };
        let cycles = figures
            .cycles
            .iter()
            .map(|c| CycleReport {
                cycle: c.cycle,
                connected: c.connected,
                unconnected: c.unconnected,
                connects_per_sec: if c.connect_secs > 0.0 {
                    c.connected as f64 / c.connect_secs
                } else {
                    0.0
                },
                connect_latency_us: c.connect_latency.percentiles(),
                tls_full: c.tls_full,
                tls_resumed: c.tls_resumed,
                connects_per_broker_cpu_sec: c
                    .broker_cpu_secs
                    .filter(|&s| s > 0.0)
                    .map(|s| c.connected as f64 / s),
            })
            .collect();
        PhaseReport {
            name: info.name,
            command: info.command,
            transport: info.transport,
            mqtt_version: info.mqtt_version,
            hosts: info.hosts,
            connects_per_sec: if figures.connect_secs > 0.0 {
                figures.connected as f64 / figures.connect_secs
            } else {
                0.0
            },
            published_per_sec: per_sec(figures.published),
            received_per_sec: per_sec(figures.received),
            connect_latency_us: figures.connect_latency.percentiles(),
            e2e_latency_us: figures.e2e_latency.percentiles(),
            cycles,
            figures,
            broker: None,
        }
    }

    /// The text summary.
    pub fn to_text(&self) -> String {
        let f = &self.figures;
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let version = match self.mqtt_version {
            3 => "3.1",
            4 => "3.1.1",
            _ => "5",
        };
        line(format!(
            "== {} ({}): {} clients, {} over MQTT {version}, {} in {:.1} s, {} process(es)",
            self.name,
            self.command,
            f.clients,
            self.transport,
            self.hosts.join(","),
            f.elapsed_secs,
            f.processes
        ));
        line(format!(
            "connect   {} ok, {} failed of {} attempts ({:.0}/s over {:.2} s); {} redirects; peak open {}, open at end {}",
            f.connected,
            f.connect_failed,
            f.connect_attempts,
            self.connects_per_sec,
            f.connect_secs,
            f.redirects,
            f.peak_open,
            f.open_at_end
        ));
        if f.never_connected > 0 {
            line(format!(
                "          {} clients never connected (failed, still connecting or not started when the run ended)",
                f.never_connected
            ));
        }
        if f.connected > 0 {
            line(format!(
                "          connect-to-CONNACK {}",
                pct(&self.connect_latency_us)
            ));
        }
        if !f.connect_failures.is_empty() {
            line(format!(
                "          failures: {}",
                by_reason(&f.connect_failures)
            ));
        }
        if f.disconnects > 0 || f.sessions_lost > 0 {
            line(format!(
                "reconnect {} connections lost by the broker (most by one client: {}; clients by count {}); {} sessions lost",
                f.disconnects,
                f.max_disconnects_per_client,
                by_reason(&f.clients_by_disconnects),
                f.sessions_lost
            ));
        }
        let tls = self.transport == "tls" || self.transport == "wss";
        if tls {
            line(format!(
                "tls       {} full handshakes, {} resumed",
                f.tls_full, f.tls_resumed
            ));
        }
        if f.published > 0 || self.command == "pub" {
            line(format!(
                "publish   {} sent ({:.0}/s), {} acked",
                f.published, self.published_per_sec, f.acked
            ));
        }
        if f.received > 0 || self.command == "sub" {
            line(format!(
                "receive   {} subscribed; {} received ({:.0}/s); lost {}, duplicated {}, out of order {}; unmarked {}",
                f.subscribed,
                f.received,
                self.received_per_sec,
                f.lost,
                f.duplicated,
                f.out_of_order,
                f.unmarked
            ));
            if f.e2e_latency.count() > 0 {
                line(format!(
                    "          publish-to-receive {}",
                    pct(&self.e2e_latency_us)
                ));
            }
            let odd: Vec<_> = f
                .subscribers
                .iter()
                .filter(|s| s.lost + s.duplicated + s.out_of_order > 0)
                .collect();
            if !odd.is_empty() {
                let worst = odd
                    .iter()
                    .max_by_key(|s| (s.lost, s.duplicated, s.out_of_order))
                    .map(|s| {
                        format!(
                            "client {}: lost {}, dup {}, ooo {}",
                            s.client, s.lost, s.duplicated, s.out_of_order
                        )
                    })
                    .unwrap_or_default();
                line(format!(
                    "          {} of {} subscribers saw loss/dup/reorder (worst {worst})",
                    odd.len(),
                    f.subscribers.len()
                ));
            }
        }
        for c in &self.cycles {
            let failures = f
                .cycles
                .iter()
                .find(|x| x.cycle == c.cycle)
                .map(|x| by_reason(&x.failures))
                .unwrap_or_default();
            line(format!(
                "cycle {:<3} {} connected, {} unconnected, {:.0} conn/s{}; {}{}{}",
                c.cycle,
                c.connected,
                c.unconnected,
                c.connects_per_sec,
                c.connects_per_broker_cpu_sec
                    .map(|r| format!(" ({r:.0} per broker CPU s)"))
                    .unwrap_or_default(),
                pct(&c.connect_latency_us),
                if tls {
                    format!("; tls full {} resumed {}", c.tls_full, c.tls_resumed)
                } else {
                    String::new()
                },
                if failures.is_empty() {
                    String::new()
                } else {
                    format!("; failures {failures}")
                }
            ));
        }
        if self.command == "storm" {
            line(format!(
                "storm     unconnected at end: {}",
                f.unconnected_at_end
            ));
        }
        if let Some(b) = &self.broker {
            line(b.to_line());
        }
        if !f.errors.is_empty() {
            line(format!("errors    {}", by_reason(&f.errors)));
            for m in f.error_messages.iter().take(5) {
                line(format!("          {m}"));
            }
        }
        out
    }
}

fn by_reason(map: &std::collections::BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn pct(p: &Percentiles) -> String {
    format!(
        "ms p50 {} p90 {} p99 {} p99.9 {} max {} (n={})",
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.p999),
        ms(p.max),
        p.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_mentions_losses_and_cycles() {
        let mut f = Figures {
            processes: 2,
            clients: 4,
            elapsed_secs: 2.0,
            connect_secs: 2.0,
            connected: 4,
            received: 10,
            lost: 1,
            disconnects: 3,
            max_disconnects_per_client: 2,
            sessions_lost: 1,
            ..Figures::default()
        };
        f.clients_by_disconnects = [
            ("0".to_owned(), 2),
            ("1".to_owned(), 1),
            ("2+".to_owned(), 1),
        ]
        .into_iter()
        .collect();
        f.connect_latency.record(1500);
        f.subscribers.push(crate::figures::SubscriberFigures {
            client: 1,
            received: 10,
            lost: 1,
            ..Default::default()
        });
        f.cycles.push(crate::figures::CycleFigures {
            cycle: 0,
            connected: 4,
            connect_secs: 0.5,
            ..Default::default()
        });
        let info = PhaseInfo {
            name: "sub".into(),
            command: "sub".into(),
            transport: "tcp".into(),
            mqtt_version: 5,
            hosts: vec!["127.0.0.1:1883".into()],
        };
        let r = PhaseReport::new(info, f);
        assert_eq!(r.connects_per_sec, 2.0);
        assert_eq!(r.cycles[0].connects_per_sec, 8.0);
        let text = r.to_text();
        assert!(text.contains("lost 1, duplicated 0"), "{text}");
        assert!(text.contains("1 of 1 subscribers"), "{text}");
        assert!(
            text.contains("3 connections lost by the broker (most by one client: 2"),
            "{text}"
        );
        assert!(text.contains("1 sessions lost"), "{text}");
        assert!(text.contains("cycle 0"), "{text}");
        assert!(!text.contains("tls "), "{text}");
        let mut info = r.clone();
        info.transport = "wss".into();
        info.cycles[0].tls_resumed = 3;
        let text = info.to_text();
        assert!(text.contains("tls       0 full handshakes"), "{text}");
        assert!(text.contains("tls full 0 resumed 3"), "{text}");
    }
}
