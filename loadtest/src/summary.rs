//! The side-by-side table: groups fan-out reports by scenario and broker, takes medians over
//! repeated runs, and compares each broker's delivered rate with a baseline broker's.
//!
//! Pure: reports in, text out. It must never run a benchmark or read files.

use std::fmt::Write as _;

use crate::report::FanoutReport;

/// Median of the present values; `None` if there are none.
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values
        .into_iter()
        .flatten()
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// One row of the table: the medians of one broker in one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Scenario label.
    pub scenario: String,
    /// Broker label.
    pub broker: String,
    /// Runs behind the medians.
    pub runs: usize,
    /// Median delivered msg/s.
    pub delivered: f64,
    /// Median published msg/s.
    pub published: f64,
    /// Median p50 latency, µs.
    pub p50_us: Option<f64>,
    /// Median p99 latency, µs.
    pub p99_us: Option<f64>,
    /// Median peak broker RSS, MiB.
    pub rss_mib: Option<f64>,
    /// Median share of the full fan-out delivered, percent.
    pub received_pct: Option<f64>,
    /// Median broker CPU, percent of one core.
    pub broker_cpu: Option<f64>,
    /// Errors summed over the runs.
    pub errors: u64,
    /// Delivered rate over the baseline broker's in the same scenario.
    pub ratio: Option<f64>,
}

/// Groups `reports` into rows (first-seen order) and fills the ratio against `baseline`.
pub fn rows(reports: &[FanoutReport], baseline: &str) -> Vec<Row> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in reports {
        let key = label(r);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rows: Vec<Row> = keys
        .into_iter()
        .map(|(scenario, broker)| {
            let runs: Vec<&FanoutReport> = reports
                .iter()
                .filter(|r| label(r) == (scenario.clone(), broker.clone()))
                .collect();
            let m = |f: &dyn Fn(&FanoutReport) -> Option<f64>| median(runs.iter().map(|r| f(r)));
            Row {
                runs: runs.len(),
                delivered: m(&|r| Some(r.delivered_per_sec)).unwrap_or(0.0),
                published: m(&|r| Some(r.published_per_sec)).unwrap_or(0.0),
                p50_us: m(&|r| r.latency.as_ref().map(|l| l.p50_us)),
                p99_us: m(&|r| r.latency.as_ref().map(|l| l.p99_us)),
                rss_mib: m(&|r| r.broker_rss_max_mib),
                received_pct: m(&|r| Some(r.delivered_ratio * 100.0)),
                broker_cpu: m(&|r| r.broker_cpu_percent),
                errors: runs.iter().map(|r| r.errors).sum(),
                ratio: None,
                scenario,
                broker,
            }
        })
        .collect();
    let base: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.broker == baseline)
        .map(|r| (r.scenario.clone(), r.delivered))
        .collect();
    for row in &mut rows {
        row.ratio = base
            .iter()
            .find(|(s, d)| *s == row.scenario && *d > 0.0)
            .map(|(_, d)| row.delivered / d);
    }
    rows
}

fn label(r: &FanoutReport) -> (String, String) {
    let scenario = r
        .scenario
        .clone()
        .unwrap_or_else(|| format!("qos{}", r.qos));
    (
        scenario,
        r.broker.clone().unwrap_or_else(|| "broker".to_owned()),
    )
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The table as aligned text, ratio column headed `x/<baseline>`.
pub fn table(rows: &[Row], baseline: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<12} {:>4} {:>14} {:>14} {:>7} {:>9} {:>9} {:>8} {:>8} {:>6} {:>12}",
        "scenario",
        "broker",
        "runs",
        "delivered/s",
        "published/s",
        "recv %",
        "p50 us",
        "p99 us",
        "RSS MiB",
        "CPU %",
        "errors",
        format!("x/{baseline}")
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<16} {:<12} {:>4} {:>14.0} {:>14.0} {:>7} {:>9} {:>9} {:>8} {:>8} {:>6} {:>12}",
            r.scenario,
            r.broker,
            r.runs,
            r.delivered,
            r.published,
            cell(r.received_pct, 1),
            cell(r.p50_us, 0),
            cell(r.p99_us, 0),
            cell(r.rss_mib, 1),
            cell(r.broker_cpu, 0),
            r.errors,
            cell(r.ratio, 2)
        );
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::report::LatencySummary;

    fn report(broker: &str, scenario: &str, delivered: f64, p50: f64) -> FanoutReport {
        FanoutReport {
            broker: Some(broker.into()),
            scenario: Some(scenario.into()),
            mqtt_version: 4,
            qos: 0,
            publishers: 1,
            subscribers: 1,
            size: 100,
            inflight: 32,
            offered_per_sec: None,
            pub_endpoints: Vec::new(),
            sub_endpoints: Vec::new(),
            runtime_threads: 1,
            window_secs: 1.0,
            published_per_sec: delivered,
            acked_per_sec: 0.0,
            delivered_per_sec: delivered,
            delivered_per_sec_min_subscriber: delivered,
            delivered_per_sec_max_subscriber: delivered,
            published_total: 0,
            delivered_total: 0,
            foreign_total: 0,
            drain_secs: 0.0,
            delivered_ratio: 1.0,
            latency: Some(LatencySummary {
                samples: 1,
                p50_us: p50,
                p99_us: p50,
                max_us: p50,
            }),
            broker_rss_max_mib: None,
            broker_cpu_percent: None,
            loadtest_cpu_percent: None,
            errors: 1,
            error_messages: Vec::new(),
        }
    }

    #[test]
    fn medians_and_ratio_against_baseline() {
        let reports = vec![
            report("mosquitto", "qos0", 100.0, 10.0),
            report("meshmq", "qos0", 300.0, 5.0),
            report("mosquitto", "qos0", 200.0, 30.0),
            report("mosquitto", "qos0", 150.0, 20.0),
            report("meshmq", "qos1", 50.0, 1.0),
        ];
        let rows = rows(&reports, "mosquitto");
        assert_eq!(rows.len(), 3);
        let mosq = rows.iter().find(|r| r.broker == "mosquitto").unwrap();
        assert_eq!(
            (mosq.runs, mosq.delivered, mosq.p50_us, mosq.errors),
            (3, 150.0, Some(20.0), 3)
        );
        let mesh = rows
            .iter()
            .find(|r| r.broker == "meshmq" && r.scenario == "qos0")
            .unwrap();
        assert_eq!(mesh.ratio, Some(2.0));
        let alone = rows.iter().find(|r| r.scenario == "qos1").unwrap();
        assert_eq!(alone.ratio, None);
        assert!(table(&rows, "mosquitto").contains("x/mosquitto"));
    }

    #[test]
    fn median_of_even_and_empty() {
        assert_eq!(median([Some(1.0), Some(3.0)]), Some(2.0));
        assert_eq!(median([None, None]), None);
    }
}
