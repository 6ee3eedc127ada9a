//! Congestion control behind a small trait: NewReno (RFC 5681, RFC 6582's
//! window rules) and CUBIC (RFC 9438), both with slow start and RFC 3465
//! appropriate byte counting. Recovery itself (which segment to resend) is
//! the connection's business; a controller only sizes the window.

use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    NewReno,
    Cubic,
}

pub trait Controller: std::fmt::Debug + Send {
    /// The congestion window in bytes.
    fn window(&self) -> usize;
    fn ssthresh(&self) -> usize;
    /// `acked` new bytes were acknowledged outside recovery; `rtt_ns` is
    /// the RTT sample this ACK gave, in nanoseconds.
    fn on_ack(&mut self, now: Instant, acked: usize, rtt_ns: Option<u64>);
    /// Loss detected by duplicate ACKs or SACK (RFC 5681 §3.2 step 2,
    /// RFC 9438 §4.6): shrink, given the bytes in flight.
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize);
    /// Recovery ended (RFC 6582 §3.2 step 3): deflate to ssthresh.
    fn on_recovery_end(&mut self, in_flight: usize);
    /// Retransmission timeout (RFC 5681 §3.1 eq. 4): one segment, slow start again.
    fn on_rto(&mut self, in_flight: usize);
    fn set_mss(&mut self, mss: usize);
}

/// The controllers this crate has, held inline (no allocation per connection).
#[derive(Debug, Clone)]
pub enum CongestionControl {
    NewReno(NewReno),
    Cubic(Cubic),
}

impl CongestionControl {
    pub fn new(algorithm: Algorithm, mss: usize, initial_window: u32) -> Self {
        match algorithm {
            Algorithm::NewReno => CongestionControl::NewReno(NewReno::new(mss, initial_window)),
            Algorithm::Cubic => CongestionControl::Cubic(Cubic::new(mss, initial_window)),
        }
    }
}

/// Calls the controller held, by a match the compiler sees through (a
/// `&dyn Controller` made in each arm stays an indirect call).
macro_rules! dispatch {
    ($self:expr, $c:ident => $call:expr) => {
        match $self {
            CongestionControl::NewReno($c) => $call,
            CongestionControl::Cubic($c) => $call,
        }
    };
}

impl Controller for CongestionControl {
    #[inline]
    fn window(&self) -> usize {
        dispatch!(self, c => c.window())
    }
    fn ssthresh(&self) -> usize {
        dispatch!(self, c => c.ssthresh())
    }
    #[inline]
    fn on_ack(&mut self, now: Instant, acked: usize, rtt_ns: Option<u64>) {
        dispatch!(self, c => c.on_ack(now, acked, rtt_ns))
    }
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize) {
        dispatch!(self, c => c.on_congestion_event(now, in_flight))
    }
    fn on_recovery_end(&mut self, in_flight: usize) {
        dispatch!(self, c => c.on_recovery_end(in_flight))
    }
    fn on_rto(&mut self, in_flight: usize) {
        dispatch!(self, c => c.on_rto(in_flight))
    }
    fn set_mss(&mut self, mss: usize) {
        dispatch!(self, c => c.set_mss(mss))
    }
}

/// RFC 3465 §2.3: in slow start, count at most L = 2 segments per ACK.
const ABC_LIMIT: usize = 2;

fn initial_cwnd(mss: usize, segments: u32) -> usize {
    // RFC 6928 §2: min(10*MSS, max(2*MSS, 14600)) for 10 segments; honour
    // a configured count directly.
    (segments as usize).max(1) * mss
}

#[derive(Debug, Clone)]
pub struct NewReno {
    cwnd: usize,
    ssthresh: usize,
    mss: usize,
    /// Bytes acked since cwnd last grew in congestion avoidance.
    acked_in_ca: usize,
}

impl NewReno {
    pub fn new(mss: usize, iw: u32) -> Self {
        NewReno {
            cwnd: initial_cwnd(mss, iw),
            ssthresh: usize::MAX,
            mss,
            acked_in_ca: 0,
        }
    }
}

impl Controller for NewReno {
    fn window(&self) -> usize {
        self.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
    fn on_ack(&mut self, _now: Instant, acked: usize, _rtt_ns: Option<u64>) {
        if self.cwnd < self.ssthresh {
            // RFC 5681 §3.1 eq. 2 with ABC: cwnd += min(N, L*SMSS)
            self.cwnd += acked.min(ABC_LIMIT * self.mss);
        } else {
            // RFC 5681 §3.1 / RFC 3465 §2.1: one SMSS per cwnd of bytes acked.
            self.acked_in_ca += acked;
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd += self.mss;
            }
        }
    }
    fn on_congestion_event(&mut self, _now: Instant, in_flight: usize) {
        // RFC 5681 §3.2 eq. 4: ssthresh = max(FlightSize / 2, 2*SMSS)
        self.ssthresh = (in_flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.acked_in_ca = 0;
    }
    fn on_recovery_end(&mut self, in_flight: usize) {
        // RFC 6582 §3.2 step 3 (option 1): min(ssthresh, max(FlightSize, SMSS) + SMSS)
        self.cwnd = self.ssthresh.min(in_flight.max(self.mss) + self.mss);
    }
    fn on_rto(&mut self, in_flight: usize) {
        self.ssthresh = (in_flight / 2).max(2 * self.mss);
        self.cwnd = self.mss;
        self.acked_in_ca = 0;
    }
    fn set_mss(&mut self, mss: usize) {
        let segments = (self.cwnd / self.mss.max(1)).max(1);
        self.mss = mss.max(1);
        self.cwnd = segments * self.mss;
    }
}

/// CUBIC (RFC 9438).
#[derive(Debug, Clone)]
pub struct Cubic {
    cwnd: usize,
    ssthresh: usize,
    mss: usize,
    /// W_max in segments (§4.2): the window before the last reduction.
    w_max: f64,
    /// The last W_max, for fast convergence (§4.7).
    w_last_max: f64,
    /// Start of the current congestion-avoidance epoch (§4.2 t).
    epoch_start: Option<Instant>,
    /// K in seconds (§4.2 eq. 2).
    k: f64,
    /// The Reno-friendly estimate in segments (§4.3).
    w_est: f64,
    /// Bytes acked not yet turned into window growth.
    acked_in_ca: usize,
    /// The smallest RTT sample, in nanoseconds.
    min_rtt: Option<u64>,
}

/// §5.1: C = 0.4, beta_cubic = 0.7.
const CUBIC_C: f64 = 0.4;
const CUBIC_BETA: f64 = 0.7;

impl Cubic {
    pub fn new(mss: usize, iw: u32) -> Self {
        Cubic {
            cwnd: initial_cwnd(mss, iw),
            ssthresh: usize::MAX,
            mss,
            w_max: 0.0,
            w_last_max: 0.0,
            epoch_start: None,
            k: 0.0,
            w_est: 0.0,
            acked_in_ca: 0,
            min_rtt: None,
        }
    }

    fn segments(&self) -> f64 {
        self.cwnd as f64 / self.mss as f64
    }

    /// Congestion avoidance (§4.2-§4.5): `on_ack` outside slow start.
    fn avoid_congestion(&mut self, now: Instant, acked: usize) {
        // §4.2: a new epoch starts with the first ACK of congestion avoidance.
        let epoch = *self.epoch_start.get_or_insert(now);
        if self.w_max <= 0.0 {
            self.w_max = self.segments();
            self.k = 0.0;
        }
        if self.w_est <= 0.0 {
            self.w_est = self.segments();
        }
        self.acked_in_ca += acked;
        let cwnd_seg = self.segments();
        let rtt = self.min_rtt.map_or(0.1, |ns| ns as f64 / 1e9);
        let t = now.saturating_duration_since(epoch).as_secs_f64() + rtt;
        // §4.2 eq. 1: W_cubic(t) = C*(t-K)^3 + W_max
        let w_cubic = CUBIC_C * (t - self.k).powi(3) + self.w_max;
        // §4.3: W_est += alpha * segments_acked / cwnd, alpha = 3(1-beta)/(1+beta)
        let alpha = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
        self.w_est += alpha * (acked as f64 / self.mss as f64) / cwnd_seg;
        let target = if w_cubic < self.w_est {
            self.w_est
        } else {
            // §4.4/4.5: grow toward the cubic target, at most 1.5x per RTT.
            w_cubic.min(1.5 * cwnd_seg)
        };
        if target > cwnd_seg {
            // (target - cwnd)/cwnd segments per segment acked.
            let segs_acked = self.acked_in_ca as f64 / self.mss as f64;
            let grow = (target - cwnd_seg) / cwnd_seg * segs_acked;
            let grow_bytes = (grow * self.mss as f64) as usize;
            if grow_bytes > 0 {
                self.cwnd += grow_bytes;
                self.acked_in_ca = 0;
            }
        } else {
            self.acked_in_ca = 0;
        }
    }
}

impl Controller for Cubic {
    fn window(&self) -> usize {
        self.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
    #[inline]
    fn on_ack(&mut self, now: Instant, acked: usize, rtt_ns: Option<u64>) {
        if let Some(r) = rtt_ns {
            self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        }
        if self.cwnd < self.ssthresh {
            self.cwnd += acked.min(ABC_LIMIT * self.mss);
            return;
        }
        self.avoid_congestion(now, acked);
    }
    fn on_congestion_event(&mut self, now: Instant, _in_flight: usize) {
        let cwnd_seg = self.segments();
        // §4.7 fast convergence
        self.w_max = if cwnd_seg < self.w_last_max {
            cwnd_seg * (1.0 + CUBIC_BETA) / 2.0
        } else {
            cwnd_seg
        };
        self.w_last_max = cwnd_seg;
        // §4.6: ssthresh = cwnd * beta, at least 2 segments
        let reduced = ((cwnd_seg * CUBIC_BETA) * self.mss as f64) as usize;
        self.ssthresh = reduced.max(2 * self.mss);
        self.cwnd = self.ssthresh;
        // §4.2 eq. 2: K = cbrt(W_max * (1 - beta) / C)
        self.k = (self.w_max * (1.0 - CUBIC_BETA) / CUBIC_C).cbrt();
        self.epoch_start = Some(now);
        self.w_est = self.segments();
        self.acked_in_ca = 0;
    }
    fn on_recovery_end(&mut self, _in_flight: usize) {
        self.cwnd = self.ssthresh.max(self.mss);
    }
    fn on_rto(&mut self, _in_flight: usize) {
        // §4.8: as Reno, and the epoch restarts.
        let cwnd_seg = self.segments();
        self.w_max = cwnd_seg;
        self.w_last_max = cwnd_seg;
        self.ssthresh = (((cwnd_seg * CUBIC_BETA) * self.mss as f64) as usize).max(2 * self.mss);
        self.cwnd = self.mss;
        self.epoch_start = None;
        self.w_est = 0.0;
        self.k = 0.0;
        self.acked_in_ca = 0;
    }
    fn set_mss(&mut self, mss: usize) {
        let segments = (self.cwnd / self.mss.max(1)).max(1);
        self.mss = mss.max(1);
        self.cwnd = segments * self.mss;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn newreno_slow_start_then_avoidance() {
        let now = Instant::now();
        let mut c = NewReno::new(1000, 10);
        assert_eq!(c.window(), 10_000);
        // ABC: one ACK for 5 segments grows by at most 2 segments.
        c.on_ack(now, 5000, None);
        assert_eq!(c.window(), 12_000);
        c.on_congestion_event(now, 12_000);
        assert_eq!(c.ssthresh(), 6000);
        assert_eq!(c.window(), 6000);
        // Congestion avoidance: one MSS per window of bytes acked.
        c.on_ack(now, 3000, None);
        assert_eq!(c.window(), 6000);
        c.on_ack(now, 3000, None);
        assert_eq!(c.window(), 7000);
        c.on_rto(7000);
        assert_eq!(c.window(), 1000);
        assert_eq!(c.ssthresh(), 3500);
    }

    #[test]
    fn cubic_reduces_by_beta_and_regrows_toward_wmax() {
        let t0 = Instant::now();
        let mut c = Cubic::new(1000, 10);
        for _ in 0..20 {
            c.on_ack(t0, 2000, Some(10_000_000));
        }
        let before = c.window();
        c.on_congestion_event(t0, before);
        assert_eq!(
            c.window(),
            ((before as f64 / 1000.0) * 0.7 * 1000.0) as usize,
            "RFC 9438 4.6: cwnd * 0.7"
        );
        let after_loss = c.window();
        let mut t = t0;
        for _ in 0..2000 {
            t += Duration::from_millis(10);
            c.on_ack(t, 1000, Some(10_000_000));
        }
        assert!(c.window() > after_loss, "CUBIC grows again after a loss");
        assert!(
            c.window() >= before,
            "and reaches W_max again after K seconds"
        );
    }
}
