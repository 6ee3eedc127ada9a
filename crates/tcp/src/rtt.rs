//! The retransmission timeout (RFC 6298).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    min: Duration,
    max: Duration,
    /// Consecutive backoffs since the last valid sample.
    backoffs: u32,
}

/// RFC 6298 §2: clock granularity G; we keep microseconds, so G is negligible.
const GRANULARITY: Duration = Duration::from_millis(1);

impl RttEstimator {
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: initial.clamp(min, max),
            min,
            max,
            backoffs: 0,
        }
    }

    /// A new RTT measurement R (RFC 6298 §2.2, §2.3).
    pub fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                // §2.2: SRTT <- R, RTTVAR <- R/2
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                // §2.3: RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|; SRTT <- 7/8 SRTT + 1/8 R'
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        // RTO <- SRTT + max(G, K*RTTVAR), K = 4; §2.4/§2.5 bound it.
        self.rto = (srtt + (self.rttvar * 4).max(GRANULARITY)).clamp(self.min, self.max);
        self.backoffs = 0;
    }

    /// §5.5: on a retransmission timeout, RTO <- RTO * 2 (up to the maximum).
    pub fn backoff(&mut self) {
        self.rto = (self.rto * 2).min(self.max);
        self.backoffs += 1;
    }

    /// Sets the RTO directly (RFC 6298 §5.7), within the bounds.
    pub fn set_rto(&mut self, rto: Duration) {
        self.rto = rto.clamp(self.min, self.max);
    }

    pub fn rto(&self) -> Duration {
        self.rto
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
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
