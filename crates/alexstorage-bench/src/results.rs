//! What a run measured: one row per (workload, variant, engine), each with the samples
//! of every repeat; medians, ratios and goal verdicts are computed from them.

use serde::Serialize;

use crate::engines::Class;

/// The unit of a row's figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// Nanoseconds per operation (lower is better).
    NsPerOp,
    /// Nanoseconds per key returned by a scan (lower is better).
    NsPerKey,
    /// Operations per second (higher is better).
    OpsPerSec,
    /// Milliseconds (lower is better).
    Ms,
    /// Bytes per key (lower is better).
    BytesPerKey,
    /// A ratio such as bytes on disk / raw bytes (lower is better).
    Ratio,
    /// A share of attempts, such as transaction commits that conflicted (lower is
    /// better; not compared as a ratio between engines, since it may be 0).
    Share,
}

impl Unit {
    /// The unit as the tables write it.
    pub fn label(self) -> &'static str {
        match self {
            Unit::NsPerOp => "ns/op",
            Unit::NsPerKey => "ns/key",
            Unit::OpsPerSec => "ops/s",
            Unit::Ms => "ms",
            Unit::BytesPerKey => "bytes/key",
            Unit::Ratio => "x raw",
            Unit::Share => "of attempts",
        }
    }

    /// Whether a larger figure is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Unit::OpsPerSec)
    }
}

/// One repeat's measurement.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// The figure, in the row's unit.
    pub value: f64,
    /// Throughput from total time, where the row is about operations.
    pub ops_per_s: Option<f64>,
    /// Median latency of the sampled operations, ns.
    pub p50_ns: Option<f64>,
    /// 99th percentile latency of the sampled operations, ns.
    pub p99_ns: Option<f64>,
}

/// All repeats of one engine on one workload variant.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Workload id, as in BENCHMARKS.md.
    pub workload: String,
    /// Variant within the workload ("" if none): thread count, phase, ...
    pub variant: String,
    /// Engine name.
    pub engine: String,
    /// Unit of `value`.
    pub unit: Unit,
    /// Durability class every engine had in this row.
    pub class: Class,
    /// One sample per repeat.
    pub samples: Vec<Sample>,
    /// Why the engine could not run this workload.
    pub not_available: Option<String>,
}

impl Row {
    /// The median sample (with an even count, the mean of the two middle ones).
    pub fn median(&self) -> Option<Sample> {
        let mut sorted: Vec<&Sample> = self.samples.iter().collect();
        sorted.sort_by(|a, b| a.value.total_cmp(&b.value));
        let middle = sorted.len() / 2;
        match sorted.len() {
            0 => None,
            len if len % 2 == 1 => sorted.get(middle).map(|sample| (*sample).clone()),
            _ => {
                let (low, high) = (sorted[middle - 1], sorted[middle]);
                let mean = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (a + b) / 2.0);
                Some(Sample {
                    value: (low.value + high.value) / 2.0,
                    ops_per_s: mean(low.ops_per_s, high.ops_per_s),
                    p50_ns: mean(low.p50_ns, high.p50_ns),
                    p99_ns: mean(low.p99_ns, high.p99_ns),
                })
            }
        }
    }
}

/// Every row of a run, in the order they were first recorded.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// The rows.
    pub rows: Vec<Row>,
}

impl Results {
    fn row(&mut self, workload: &str, variant: &str, engine: &str, unit: Unit, class: Class) -> &mut Row {
        let at =
            self.rows.iter().position(|row| row.workload == workload && row.variant == variant && row.engine == engine);
        let at = at.unwrap_or_else(|| {
            self.rows.push(Row {
                workload: workload.into(),
                variant: variant.into(),
                engine: engine.into(),
                unit,
                class,
                samples: Vec::new(),
                not_available: None,
            });
            self.rows.len() - 1
        });
        &mut self.rows[at]
    }

    /// Adds one repeat's sample.
    pub fn record(&mut self, workload: &str, variant: &str, engine: &str, unit: Unit, class: Class, sample: Sample) {
        self.row(workload, variant, engine, unit, class).samples.push(sample);
    }

    /// Marks a workload variant as not available for an engine, with the reason.
    pub fn not_available(&mut self, workload: &str, variant: &str, engine: &str, unit: Unit, class: Class, why: &str) {
        self.row(workload, variant, engine, unit, class).not_available = Some(why.into());
    }

    /// The row of an engine, if recorded.
    pub fn find(&self, workload: &str, variant: &str, engine: &str) -> Option<&Row> {
        self.rows.iter().find(|row| row.workload == workload && row.variant == variant && row.engine == engine)
    }

    /// The median figure of an engine, if it has samples.
    pub fn median(&self, workload: &str, variant: &str, engine: &str) -> Option<Sample> {
        self.find(workload, variant, engine)?.median()
    }

    /// The (workload, variant) pairs in first-recorded order.
    pub fn sections(&self) -> Vec<(String, String)> {
        let mut sections: Vec<(String, String)> = Vec::new();
        for row in &self.rows {
            if !sections.iter().any(|(workload, variant)| *workload == row.workload && *variant == row.variant) {
                sections.push((row.workload.clone(), row.variant.clone()));
            }
        }
        sections
    }
}

/// How many times better `subject` is than `other` in `unit` (> 1: the subject wins).
pub fn advantage(unit: Unit, subject: f64, other: f64) -> f64 {
    if unit.higher_is_better() {
        subject / other
    } else {
        other / subject
    }
}

/// Latency percentiles of sampled timings, in ns.
pub fn percentiles(mut timings: Vec<u64>) -> (Option<f64>, Option<f64>) {
    if timings.is_empty() {
        return (None, None);
    }
    timings.sort_unstable();
    let at = |q: f64| timings[((timings.len() - 1) as f64 * q).round() as usize] as f64;
    (Some(at(0.5)), Some(at(0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_advantage() {
        let mut results = Results::default();
        for value in [3.0, 1.0, 2.0] {
            let sample = Sample { value, ..Sample::default() };
            results.record("get", "", "x", Unit::NsPerOp, Class::Buffered, sample);
        }
        assert_eq!(results.median("get", "", "x").map(|sample| sample.value), Some(2.0));
        assert_eq!(advantage(Unit::NsPerOp, 100.0, 1000.0), 10.0);
        assert_eq!(advantage(Unit::OpsPerSec, 1000.0, 100.0), 10.0);
        assert_eq!(percentiles((1..=100).collect()), (Some(51.0), Some(99.0)));
    }
}
