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

/// One splitmix64 step: spreads a seed over all 64 bits, so seeds that
/// differ in any bit (0 and 1, 2 and 3, ...) start far apart.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for `seed`: every seed its own sequence. xorshift's
    /// state must not be zero; splitmix64 is a bijection, so exactly one
    /// seed maps there, and it gets a fixed non-zero state instead.
    fn new(seed: u64) -> Rng {
        match splitmix64(seed) {
            0 => Rng(0x9e37_79b9_7f4a_7c15),
            s => Rng(s),
        }
    }

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

/// Packets on their way, in delivery order.
#[derive(Default)]
pub(crate) struct Lane {
    queue: BinaryHeap<Queued>,
    /// When the wire is free again (bandwidth limit).
    busy_until: Option<Instant>,
}

impl Lane {
    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|q| q.at)
    }

    /// The next packet due by `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.queue.peek().is_some_and(|q| q.at <= now) {
            self.queue.pop().map(|q| q.bytes)
        } else {
            None
        }
    }
}

/// What a link does to the packets put on it: the seeded faults.
pub(crate) struct Impairment {
    pub(crate) config: LinkConfig,
    rng: Rng,
    order: u64,
    pub(crate) stats: LinkStats,
}

impl Impairment {
    pub(crate) fn new(config: LinkConfig, seed: u64) -> Self {
        Impairment {
            config,
            rng: Rng::new(seed),
            order: 0,
            stats: LinkStats::default(),
        }
    }

    /// Puts `packet` on `lane` as the link would deliver it: perhaps lost,
    /// perhaps twice, late, out of order or with a flipped bit.
    pub(crate) fn put(&mut self, now: Instant, packet: &[u8], lane: &mut Lane) {
        self.stats.sent += 1;
        let c = self.config;
        if packet.len() > c.mtu {
            self.stats.too_big += 1;
            return;
        }
        if self.rng.chance(c.loss) {
            self.stats.lost += 1;
            return;
        }
        // The bandwidth limit serialises packets on the wire.
        let mut depart = now;
        if let Some(per_byte_ns) = (8 * 1_000_000_000u64).checked_div(c.bandwidth) {
            let start = lane.busy_until.map_or(now, |b| b.max(now));
            let wire = Duration::from_nanos(packet.len() as u64 * per_byte_ns);
            lane.busy_until = Some(start + wire);
            depart = start + wire;
        }
        let copies = if self.rng.chance(c.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay =
                c.delay + Duration::from_nanos(self.rng.below(c.jitter.as_nanos() as u64 + 1));
            if self.rng.chance(c.reorder) {
                self.stats.reordered += 1;
                delay += c.delay * 2 + Duration::from_millis(1);
            }
            let mut bytes = packet.to_vec();
            if !bytes.is_empty() && self.rng.chance(c.corrupt) {
                self.stats.corrupted += 1;
                let i = self.rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << self.rng.below(8);
            }
            self.order += 1;
            lane.queue.push(Queued {
                at: depart + delay,
                order: self.order,
                bytes,
            });
        }
    }
}

struct Shared {
    impairment: Impairment,
    lanes: [Lane; 2],
}

/// One end of a simulated link: a `Device` for one stack.
pub struct SimPort {
    shared: Rc<RefCell<Shared>>,
    /// 0 or 1: this end sends into `dirs[side]` and receives from `dirs[1 - side]`.
    side: usize,
}

/// Makes a link and returns its two ends.
pub fn sim_link(config: LinkConfig, seed: u64) -> (SimPort, SimPort) {
    let shared = Rc::new(RefCell::new(Shared {
        impairment: Impairment::new(config, seed),
        lanes: [Lane::default(), Lane::default()],
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
        self.shared.borrow().impairment.stats
    }

    /// Changes the link's behaviour from now on (both directions).
    pub fn set_config(&self, config: LinkConfig) {
        self.shared.borrow_mut().impairment.config = config;
    }
}

impl Device for SimPort {
    fn mtu(&self) -> usize {
        self.shared.borrow().impairment.config.mtu
    }

    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut s = self.shared.borrow_mut();
        Ok(s.lanes[1 - self.side].pop_due(now).map(|bytes| {
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            n
        }))
    }

    fn transmit(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        let mut guard = self.shared.borrow_mut();
        let Shared { impairment, lanes } = &mut *guard;
        impairment.put(now, packet, &mut lanes[self.side]);
        Ok(())
    }

    fn poll_at(&self) -> Option<Instant> {
        self.shared.borrow().lanes[1 - self.side].next_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(seed: u64) -> Vec<u64> {
        let mut r = Rng::new(seed);
        (0..8).map(|_| r.next()).collect()
    }

    #[test]
    fn every_seed_draws_its_own_numbers() {
        // Neighbours that differ only in the lowest bit included.
        let all: Vec<Vec<u64>> = (0..64).map(draws).collect();
        for a in 0..all.len() {
            for b in a + 1..all.len() {
                assert_ne!(all[a], all[b], "seeds {a} and {b} draw the same numbers");
            }
        }
        assert_eq!(draws(5), draws(5), "the same seed, the same numbers");
    }

    #[test]
    fn neighbouring_seeds_lose_different_packets() {
        let config = LinkConfig {
            loss: 0.5,
            ..LinkConfig::default()
        };
        let now = Instant::now();
        let pattern = |seed: u64| -> Vec<bool> {
            let mut imp = Impairment::new(config, seed);
            let mut lane = Lane::default();
            (0..64)
                .map(|_| {
                    let lost = imp.stats.lost;
                    imp.put(now, &[0u8; 40], &mut lane);
                    imp.stats.lost > lost
                })
                .collect()
        };
        for seed in [0u64, 2, 6, 1 << 40] {
            assert_ne!(
                pattern(seed),
                pattern(seed | 1),
                "seeds {seed} and {}",
                seed | 1
            );
        }
    }
}
