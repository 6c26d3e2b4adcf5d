//! Latency histograms ([`Hist`]: hdrhistogram, microseconds, 3 significant figures,
//! auto-resizing) that travel between processes as base64 of hdrhistogram's V2 format,
//! so a parent merges its workers' histograms exactly instead of averaging percentiles;
//! and the percentile summary the reports print ([`Percentiles`]).
//!
//! Pure. Recording never fails: values beyond the range are clamped.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Hist {
        Hist::new()
    }
}

impl PartialEq for Hist {
    fn eq(&self, other: &Hist) -> bool {
        self.0 == other.0
    }
}

impl Hist {
    /// An empty histogram.
    pub fn new() -> Hist {
        #[allow(clippy::unwrap_used)] // 3 significant figures is always a valid precision
        let h = Histogram::new(3).unwrap();
        Hist(h)
    }

    /// Records one value (µs).
    pub fn record(&mut self, micros: u64) {
        let v = micros.max(1);
        if self.0.record(v).is_err() {
            self.0.saturating_record(v);
        }
    }

    /// Adds every count of `other`.
    pub fn add(&mut self, other: &Hist) {
        // Auto-resizing histograms of the same precision always add.
        let _ = self.0.add(&other.0);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The percentile summary.
    pub fn percentiles(&self) -> Percentiles {
        let h = &self.0;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    /// V2 bytes, base64.
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::new();
        match V2Serializer::new().serialize(&self.0, &mut bytes) {
            Ok(_) => STANDARD.encode(bytes),
            Err(_) => String::new(),
        }
    }

    /// Parses [`Hist::to_base64`]; the empty string is an empty histogram.
    pub fn from_base64(text: &str) -> anyhow::Result<Hist> {
        if text.is_empty() {
            return Ok(Hist::new());
        }
        let bytes = STANDARD.decode(text)?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| anyhow::anyhow!("bad histogram: {e:?}"))?;
        let mut out = Hist::new();
        out.0
            .add(&h)
            .map_err(|e| anyhow::anyhow!("bad histogram: {e:?}"))?;
        Ok(out)
    }
}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hist, D::Error> {
        let text = String::deserialize(d)?;
        Hist::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// Percentiles of a [`Hist`], microseconds; all zero when nothing was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_exact_merge() {
        let mut a = Hist::new();
        let mut b = Hist::new();
        for v in 1..=100 {
            a.record(v);
            b.record(v * 1000);
        }
        let a2 = Hist::from_base64(&a.to_base64()).unwrap();
        assert_eq!(a2.percentiles(), a.percentiles());
        let mut merged = a2;
        merged.add(&Hist::from_base64(&b.to_base64()).unwrap());
        let p = merged.percentiles();
        assert_eq!(p.count, 200);
        assert_eq!(p.p50, 100);
        assert!(p.max >= 99_900 && p.max <= 100_100, "{}", p.max);
        assert_eq!(Hist::from_base64("").unwrap().count(), 0);
        assert!(Hist::from_base64("!!").is_err());
        let json = serde_json::to_string(&merged).unwrap();
        let back: Hist = serde_json::from_str(&json).unwrap();
        assert_eq!(back.percentiles(), p);
    }
}
