//! What a connection is allowed and asked to do.

use std::time::Duration;

use crate::congestion::Algorithm;

#[derive(Debug, Clone)]
pub struct Config {
    /// The MSS we announce: the largest segment we accept (RFC 9293 §3.7.1).
    pub mss: u16,
    /// Receive buffer cap in bytes: the most autotuning grows to, and what
    /// the window scale is chosen for.
    pub recv_buffer: usize,
    /// Receive buffer to start with; autotuning grows it with the measured
    /// bandwidth·RTT (as Linux's tcp_rmem), up to `recv_buffer`.
    pub recv_buffer_initial: usize,
    /// Send buffer size in bytes (the most `send` accepts before it returns short).
    pub send_buffer: usize,
    /// Offer window scaling (RFC 7323 §2).
    pub window_scaling: bool,
    /// Offer timestamps (RFC 7323 §3, §5).
    pub timestamps: bool,
    /// Offer SACK (RFC 2018).
    pub sack: bool,
    /// Disable Nagle's algorithm (RFC 9293 §3.7.4).
    pub nodelay: bool,
    /// RTO before any RTT sample (RFC 6298 §2.1: 1 s).
    pub rto_initial: Duration,
    /// Lower bound of the RTO (RFC 6298 §2.4 says 1 s; Linux uses 200 ms).
    pub rto_min: Duration,
    /// Upper bound of the RTO (RFC 6298 §2.5: at least 60 s).
    pub rto_max: Duration,
    /// Retransmissions of a SYN or SYN-ACK before giving up (Linux: 6).
    pub syn_retries: u32,
    /// Retransmissions of data before giving up (Linux tcp_retries2: 15).
    pub data_retries: u32,
    /// How long an ACK may wait for a second segment (RFC 9293 §3.8.6.3: < 0.5 s).
    pub delayed_ack: Duration,
    /// Maximum segment lifetime; TIME-WAIT lasts 2·MSL (RFC 9293 §3.4.2).
    pub msl: Duration,
    /// Keepalive: (idle, interval, probes) (RFC 9293 §3.8.4); off when None.
    pub keepalive: Option<(Duration, Duration, u32)>,
    /// Congestion control.
    pub congestion: Algorithm,
    /// Initial window in segments (RFC 6928: 10).
    pub initial_window: u32,
    /// Record trace events (segments, state changes, timers) for `poll_trace`.
    pub trace: bool,
    /// Largest payload of one outgoing segment when the device cuts
    /// segments itself (TSO): new data then goes out in segments of up to
    /// this many bytes, a whole number of MSS-sized pieces. 0: off.
    pub tso_max_payload: usize,
    /// Header prediction: segments a bulk transfer expects next (in-order
    /// data, ACKs that advance) take a shortcut through the receive checks
    /// with the same outcome. Off only to compare the two paths.
    pub header_prediction: bool,
    /// Tail loss probes (RFC 8985 §7, with SACK): when a flight's last
    /// segments go unacknowledged for about two round trips, resend the
    /// last one so the receiver's ACK (with SACK) shows what is missing,
    /// instead of waiting for the retransmission timeout.
    pub tail_loss_probe: bool,
    /// Early retransmit (RFC 5827): with fewer than four segments in
    /// flight and nothing more to send, fast retransmit after fewer
    /// duplicate ACKs (or SACKed segments) than three. With tail loss
    /// probes it lets a probe's SACK repair a lost tail at once.
    pub early_retransmit: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mss: 1460,
            recv_buffer: 4 * 1024 * 1024,
            recv_buffer_initial: 64 * 1024,
            send_buffer: 256 * 1024,
            window_scaling: true,
            timestamps: true,
            sack: true,
            nodelay: false,
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(120),
            syn_retries: 6,
            data_retries: 15,
            delayed_ack: Duration::from_millis(40),
            msl: Duration::from_secs(30),
            keepalive: None,
            congestion: Algorithm::Cubic,
            initial_window: 10,
            trace: false,
            tso_max_payload: 0,
            header_prediction: true,
            tail_loss_probe: true,
            early_retransmit: true,
        }
    }
}

impl Config {
    /// The window scale shift we offer: the smallest that lets the receive
    /// buffer be advertised in full (RFC 7323 §2.3: at most 14).
    pub fn recv_window_shift(&self) -> u8 {
        let mut shift = 0u8;
        while shift < 14 && (self.recv_buffer >> shift) > 65535 {
            shift += 1;
        }
        shift
    }
}
