//! Two stacks in one process, joined by a simulated link with seeded loss,
//! delay, jitter, reordering, duplication, corruption, a bandwidth limit and
//! an MTU. Deterministic: the same seed gives the same run.

use std::cell::RefCell;
use std::collections::BinaryHeap;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::device::Device;

/// What the link does to packets (each direction alike).
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    pub mtu: usize,
    /// Probability a packet is lost.
    pub loss: f64,
    /// Probability a packet arrives twice.
    pub duplicate: f64,
    /// Probability a packet is held back (arrives after later ones).
    pub reorder: f64,
    /// Probability one byte of a packet is flipped.
    pub corrupt: f64,
    /// One-way delay.
    pub delay: Duration,
    /// Up to this much extra delay, uniformly.
    pub jitter: Duration,
    /// Bits per second; 0 is unlimited.
    pub bandwidth: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            mtu: 1500,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            bandwidth: 0,
        }
    }
}

/// xorshift64*: small, seeded, deterministic.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[derive(PartialEq, Eq)]
struct Queued {
    at: Instant,
    order: u64,
    bytes: Vec<u8>,
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at).then(other.order.cmp(&self.order))
    }
}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Counters of what the link did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub too_big: u64,
}

struct Direction {
    queue: BinaryHeap<Queued>,
    /// When the wire is free again (bandwidth limit).
    busy_until: Option<Instant>,
}

struct Shared {
    config: LinkConfig,
    rng: Rng,
    order: u64,
    dirs: [Direction; 2],
    stats: LinkStats,
}

/// One end of a simulated link: a `Device` for one stack.
pub struct SimPort {
    shared: Rc<RefCell<Shared>>,
    /// 0 or 1: this end sends into `dirs[side]` and receives from `dirs[1 - side]`.
    side: usize,
}

/// Makes a link and returns its two ends.
pub fn sim_link(config: LinkConfig, seed: u64) -> (SimPort, SimPort) {
    let dir = || Direction {
        queue: BinaryHeap::new(),
        busy_until: None,
    };
    let shared = Rc::new(RefCell::new(Shared {
        config,
        rng: Rng(seed | 1),
        order: 0,
        dirs: [dir(), dir()],
        stats: LinkStats::default(),
    }));
    (
        SimPort {
            shared: shared.clone(),
            side: 0,
        },
        SimPort { shared, side: 1 },
    )
}

impl SimPort {
    pub fn stats(&self) -> LinkStats {
        self.shared.borrow().stats
    }

    /// Changes the link's behaviour from now on (both directions).
    pub fn set_config(&self, config: LinkConfig) {
        self.shared.borrow_mut().config = config;
    }
}

impl Device for SimPort {
    fn mtu(&self) -> usize {
        self.shared.borrow().config.mtu
    }

    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut s = self.shared.borrow_mut();
        let dir = &mut s.dirs[1 - self.side];
        if dir.queue.peek().is_some_and(|q| q.at <= now) {
            if let Some(q) = dir.queue.pop() {
                let n = q.bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&q.bytes[..n]);
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    fn transmit(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        let mut guard = self.shared.borrow_mut();
        let s = &mut *guard;
        s.stats.sent += 1;
        let c = s.config;
        if packet.len() > c.mtu {
            s.stats.too_big += 1;
            return Ok(());
        }
        if s.rng.chance(c.loss) {
            s.stats.lost += 1;
            return Ok(());
        }
        // The bandwidth limit serialises packets on the wire.
        let mut depart = now;
        if let Some(per_byte_ns) = (8 * 1_000_000_000u64).checked_div(c.bandwidth) {
            let dir = &mut s.dirs[self.side];
            let start = dir.busy_until.map_or(now, |b| b.max(now));
            let wire = Duration::from_nanos(packet.len() as u64 * per_byte_ns);
            dir.busy_until = Some(start + wire);
            depart = start + wire;
        }
        let copies = if s.rng.chance(c.duplicate) {
            s.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay =
                c.delay + Duration::from_nanos(s.rng.below(c.jitter.as_nanos() as u64 + 1));
            if s.rng.chance(c.reorder) {
                s.stats.reordered += 1;
                delay += c.delay * 2 + Duration::from_millis(1);
            }
            let mut bytes = packet.to_vec();
            if !bytes.is_empty() && s.rng.chance(c.corrupt) {
                s.stats.corrupted += 1;
                let i = s.rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << s.rng.below(8);
            }
            s.order += 1;
            let order = s.order;
            s.dirs[self.side].queue.push(Queued {
                at: depart + delay,
                order,
                bytes,
            });
        }
        Ok(())
    }

    fn poll_at(&self) -> Option<Instant> {
        self.shared.borrow().dirs[1 - self.side]
            .queue
            .peek()
            .map(|q| q.at)
    }
}
