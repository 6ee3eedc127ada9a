//! Medians and percentiles of a sample, and durations the way people read them.

/// Median and 99th percentile of a sample, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub p99: f64,
    /// How many values the sample held.
    pub n: usize,
}

/// The same rule as `oxcat demo`'s figures: the value at rank
/// `round((n - 1) * q)` of the sorted sample.
pub fn spread(mut v: Vec<f64>) -> Option<Spread> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some(Spread {
        median: at(0.5),
        p99: at(0.99),
        n: v.len(),
    })
}

/// `1.70 ms`, `3.2 µs`, `150 ns`.
pub fn human(ns: f64) -> String {
    if !ns.is_finite() {
        "n/a".into()
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99() {
        let s = spread((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!(s.median, 51.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.n, 100);
        assert!(spread(Vec::new()).is_none());
    }

    #[test]
    fn units() {
        assert_eq!(human(1_700_000.0), "1.70 ms");
        assert_eq!(human(3_200.0), "3.20 µs");
        assert_eq!(human(32_000.0), "32.0 µs");
        assert_eq!(human(150.0), "150 ns");
    }
}
