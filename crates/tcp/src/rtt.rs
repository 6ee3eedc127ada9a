//! The retransmission timeout (RFC 6298).

use std::time::Duration;

/// Kept in nanoseconds (u64): the same arithmetic as on `Duration`
/// (whose products and quotients truncate to the nanosecond just the
/// same), without its normalising of seconds and nanoseconds at every step.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<u64>,
    rttvar: u64,
    rto: u64,
    min: u64,
    max: u64,
    /// Consecutive backoffs since the last valid sample.
    backoffs: u32,
}

/// RFC 6298 §2: clock granularity G; we keep microseconds, so G is negligible.
const GRANULARITY: Duration = Duration::from_millis(1);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl RttEstimator {
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        let (min, max) = (nanos(min), nanos(max));
        RttEstimator {
            srtt: None,
            rttvar: 0,
            rto: nanos(initial).clamp(min, max),
            min,
            max,
            backoffs: 0,
        }
    }

    /// A new RTT measurement R (RFC 6298 §2.2, §2.3).
    #[inline]
    pub fn sample(&mut self, r: Duration) {
        self.sample_ns(nanos(r));
    }

    /// `sample` with R in nanoseconds (no `Duration` on the ACK path).
    #[inline]
    pub fn sample_ns(&mut self, r: u64) {
        let srtt = match self.srtt {
            None => {
                // §2.2: SRTT <- R, RTTVAR <- R/2
                self.rttvar = r / 2;
                r
            }
            Some(srtt) => {
                // §2.3: RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|; SRTT <- 7/8 SRTT + 1/8 R'
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar.saturating_mul(3).saturating_add(delta)) / 4;
                (srtt.saturating_mul(7).saturating_add(r)) / 8
            }
        };
        self.srtt = Some(srtt);
        // RTO <- SRTT + max(G, K*RTTVAR), K = 4; §2.4/§2.5 bound it.
        let var = self.rttvar.saturating_mul(4).max(nanos(GRANULARITY));
        self.rto = srtt.saturating_add(var).clamp(self.min, self.max);
        self.backoffs = 0;
    }

    /// §5.5: on a retransmission timeout, RTO <- RTO * 2 (up to the maximum).
    pub fn backoff(&mut self) {
        self.rto = self.rto.saturating_mul(2).min(self.max);
        self.backoffs += 1;
    }

    /// Sets the RTO directly (RFC 6298 §5.7), within the bounds.
    pub fn set_rto(&mut self, rto: Duration) {
        self.rto = nanos(rto).clamp(self.min, self.max);
    }

    #[inline]
    pub fn rto(&self) -> Duration {
        Duration::from_nanos(self.rto)
    }

    #[inline]
    pub fn srtt_ns(&self) -> Option<u64> {
        self.srtt
    }

    #[inline]
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt.map(Duration::from_nanos)
    }

    pub fn backoffs(&self) -> u32 {
        self.backoffs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_sample_then_smoothing() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        assert_eq!(e.rto(), ms(1000));
        e.sample(ms(100));
        // RTO = 100 + 4*50 = 300
        assert_eq!(e.rto(), ms(300));
        e.sample(ms(100));
        // RTTVAR = (3*50 + 0)/4 = 37.5; SRTT = 100; RTO = 100 + 150 = 250
        assert_eq!(e.rto(), Duration::from_micros(250_000));
    }

    #[test]
    fn bounds_and_backoff() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(4000));
        e.sample(ms(1));
        assert_eq!(e.rto(), ms(200), "RFC 6298 2.4: never below the minimum");
        for _ in 0..10 {
            e.backoff();
        }
        assert_eq!(e.rto(), ms(4000), "capped at the maximum");
        assert_eq!(e.backoffs(), 10);
        e.sample(ms(10));
        assert_eq!(e.backoffs(), 0);
    }
}
