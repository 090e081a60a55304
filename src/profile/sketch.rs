//! Bounded, deterministic sketches: a 64-bit hash with a fixed seed, a
//! HyperLogLog distinct counter, a uniform reservoir sample and a
//! Misra-Gries frequent-items summary.
//!
//! Every sketch here gives the same answer for the same sequence of values in
//! every process and on every platform (integer arithmetic and IEEE
//! operations only, no random seeds), whatever the batch boundaries: a
//! profile is hashed into a manifest's top hash, which must not change when
//! the same data is written twice.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x5348_4541_465f_7631; // "SHEAF_v1"
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// MurmurHash3's 64-bit finalizer: every input bit flips each output bit
/// with probability close to 1/2.
#[inline]
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The hash of a 64-bit value (integers, float bits, dates).
#[inline]
pub fn hash_u64(v: u64) -> u64 {
    mix(v ^ SEED)
}

/// The hash of a byte string (strings, binary values): 16 bytes per
/// 64x64-bit multiply folded to 64 bits (as wyhash does), then [`mix`].
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    const P1: u64 = 0xa076_1d64_78bd_642f;
    const P2: u64 = 0xe703_7ed1_a0b4_28db;
    #[inline]
    fn fold(a: u64, b: u64) -> u64 {
        let m = u128::from(a) * u128::from(b);
        (m as u64) ^ ((m >> 64) as u64)
    }
    #[inline]
    fn r8(b: &[u8]) -> u64 {
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
    }
    #[inline]
    fn r4(b: &[u8]) -> u64 {
        u64::from(u32::from_le_bytes(b[..4].try_into().expect("4 bytes")))
    }
    let mut h = SEED ^ (bytes.len() as u64).wrapping_mul(MUL);
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        h = fold(r8(c) ^ h ^ P1, r8(&c[8..]) ^ P2);
    }
    // The last 1 to 15 bytes, read as fixed-size words that may overlap
    // (as wyhash does): no copy of a variable length.
    let rest = chunks.remainder();
    let n = rest.len();
    let (a, b) = match n {
        0 => (0, 0),
        1..=3 => ((u64::from(rest[0]) << 16) | (u64::from(rest[n / 2]) << 8) | u64::from(rest[n - 1]), 0),
        4..=7 => ((r4(rest) << 32) | r4(&rest[n - 4..]), 0),
        _ => (r8(rest), r8(&rest[n - 8..])),
    };
    if n > 0 {
        h = fold(a ^ h ^ P1, b ^ P2 ^ n as u64);
    }
    mix(h)
}

/// Register index bits: 2^14 registers, a standard error of 1.04/128 = 0.81%.
const HLL_P: u32 = 14;
const HLL_M: usize = 1 << HLL_P;
const HLL_Q: u32 = 64 - HLL_P;

/// A HyperLogLog distinct-value counter over 64-bit hashes (16 KiB), with
/// Ertl's improved raw estimator (arXiv:1702.01284), which needs no bias
/// tables and is close to exact for small counts.
#[derive(Clone)]
pub struct HyperLogLog {
    registers: Box<[u8]>,
}

impl std::fmt::Debug for HyperLogLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperLogLog").field("estimate", &self.estimate()).finish()
    }
}

impl Default for HyperLogLog {
    fn default() -> Self {
        Self { registers: vec![0; HLL_M].into_boxed_slice() }
    }
}

impl HyperLogLog {
    /// Adds a value by its hash ([`hash_u64`] or [`hash_bytes`]).
    #[inline]
    pub fn add(&mut self, hash: u64) {
        let index = (hash & (HLL_M as u64 - 1)) as usize;
        let rank = ((hash >> HLL_P) | (1 << HLL_Q)).trailing_zeros() as u8 + 1;
        let r = &mut self.registers[index];
        if rank > *r {
            *r = rank;
        }
    }

    /// The estimated number of distinct values added.
    pub fn estimate(&self) -> u64 {
        let mut histogram = [0u32; HLL_Q as usize + 2];
        for &r in self.registers.iter() {
            histogram[r as usize] += 1;
        }
        let m = HLL_M as f64;
        let q = HLL_Q as usize;
        let mut z = m * tau((m - f64::from(histogram[q + 1])) / m);
        for k in (1..=q).rev() {
            z += f64::from(histogram[k]);
            z *= 0.5;
        }
        z += m * sigma(f64::from(histogram[0]) / m);
        if z.is_infinite() {
            return 0;
        }
        (0.5 / std::f64::consts::LN_2 * m * m / z).round() as u64
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

/// SplitMix64: a tiny generator with a fixed seed, so samples repeat.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(MUL);
        mix(self.0)
    }
}

/// A uniform sample of at most `capacity` values of a stream (Vitter's
/// algorithm R; the slot is drawn with Lemire's multiply-shift, integers
/// only). Holds every value while the stream is no longer than `capacity`,
/// so quantiles of small tables are exact.
#[derive(Debug, Clone)]
pub struct Reservoir {
    capacity: usize,
    seen: u64,
    values: Vec<f64>,
    rng: SplitMix64,
}

impl Reservoir {
    /// An empty sample of at most `capacity` values.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, seen: 0, values: Vec::new(), rng: SplitMix64(SEED) }
    }

    /// Offers the next value of the stream.
    #[inline]
    pub fn add(&mut self, v: f64) {
        self.seen += 1;
        if self.values.len() < self.capacity {
            self.values.push(v);
            return;
        }
        let slot = ((u128::from(self.rng.next()) * u128::from(self.seen)) >> 64) as usize;
        if slot < self.capacity {
            self.values[slot] = v;
        }
    }

    /// The sample, sorted (NaN never enters it).
    pub fn sorted(mut self) -> Vec<f64> {
        self.values.sort_by(f64::total_cmp);
        self.values
    }
}

/// The value at probability `p` of sorted `values`, interpolated linearly
/// between the two nearest ranks (pandas' and NumPy's default).
pub fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = p.clamp(0.0, 1.0) * last as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(last);
    let frac = pos - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    Some(if frac == 0.0 || a == b { a } else { a + (b - a) * frac })
}

/// Misra-Gries frequent items: at most `capacity` counters; a value seen
/// more than n/(capacity+1) times is always kept, with a count at most
/// n/(capacity+1) below its true count. While a stream holds no more than
/// `capacity` distinct values every count is exact.
///
/// Values are told apart by their 64-bit hash (the one the distinct counter
/// already computed), and a counter's text buffer is reused when the counter
/// is, so a stream of new values costs no allocation.
#[derive(Debug, Clone)]
pub struct FrequentItems {
    capacity: usize,
    /// Hash -> slot.
    index: HashMap<u64, usize, BuildHasherDefault<PassThrough>>,
    slots: Vec<Counter>,
    free: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
struct Counter {
    hash: u64,
    count: u64,
    value: String,
}

/// A [`Hasher`] for keys that already are well-mixed hashes.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with it; this is their fallback path.
        self.0 = hash_bytes(bytes);
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl FrequentItems {
    /// An empty summary with at most `capacity` counters.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, index: HashMap::default(), slots: Vec::new(), free: Vec::new() }
    }

    /// Counts one value, given with its [`hash_bytes`].
    #[inline]
    pub fn add(&mut self, hash: u64, value: &str) {
        if let Some(&i) = self.index.get(&hash) {
            self.slots[i].count += 1;
        } else if self.index.len() < self.capacity {
            let i = self.free.pop().unwrap_or_else(|| {
                self.slots.push(Counter::default());
                self.slots.len() - 1
            });
            let slot = &mut self.slots[i];
            slot.hash = hash;
            slot.count = 1;
            slot.value.clear();
            slot.value.push_str(value);
            self.index.insert(hash, i);
        } else {
            // The new value and one occurrence of every kept value cancel;
            // the index is rebuilt (cheaper than removing most of its keys).
            self.index.clear();
            self.free.clear();
            for (i, slot) in self.slots.iter_mut().enumerate() {
                slot.count -= 1;
                if slot.count == 0 {
                    self.free.push(i);
                } else {
                    self.index.insert(slot.hash, i);
                }
            }
            // Free slots are taken from the end: lowest index first.
            self.free.reverse();
        }
    }

    /// The `n` largest counts, largest first (ties by value, for a stable order).
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<&Counter> = self.slots.iter().filter(|s| s.count > 0).collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        all.into_iter().take(n).map(|s| (s.value.clone(), s.count)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hll_is_close_and_exact_when_small() {
        let mut small = HyperLogLog::default();
        for v in [1u64, 2, 3, 2, 1] {
            small.add(hash_u64(v));
        }
        assert_eq!(small.estimate(), 3);
        let mut big = HyperLogLog::default();
        for v in 0..200_000u64 {
            big.add(hash_u64(v % 100_000));
        }
        let e = big.estimate() as f64;
        assert!((e - 100_000.0).abs() / 100_000.0 < 0.03, "{e}");
        let mut strings = HyperLogLog::default();
        for v in 0..10_000 {
            strings.add(hash_bytes(format!("value-{v}").as_bytes()));
        }
        let e = strings.estimate() as f64;
        assert!((e - 10_000.0).abs() / 10_000.0 < 0.03, "{e}");
        assert_eq!(HyperLogLog::default().estimate(), 0);
    }

    const PINNED_U64: u64 = 127_776_499_062_817_645;
    const PINNED_BYTES: u64 = 22_144_448_832_435_001;

    #[test]
    fn hashes_are_fixed() {
        // Pinned: a change here changes the top hash of every profiled revision.
        assert_eq!(hash_u64(0), PINNED_U64);
        assert_eq!(hash_bytes(b"sheaf"), PINNED_BYTES);
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"a\0"));
        // Every length path (tails of 1-3, 4-7, 8-15 bytes, 16-byte chunks)
        // tells apart values differing in any one byte.
        let mut seen = std::collections::HashSet::new();
        for len in 0..40 {
            let base = vec![b'x'; len];
            assert!(seen.insert(hash_bytes(&base)));
            for at in 0..len {
                let mut v = base.clone();
                v[at] = b'y';
                assert!(seen.insert(hash_bytes(&v)), "len {len} at {at}");
            }
        }
    }

    #[test]
    fn reservoir_keeps_small_streams_and_samples_big_ones_uniformly() {
        let mut r = Reservoir::new(100);
        (0..50).for_each(|v| r.add(f64::from(v)));
        assert_eq!(r.sorted(), (0..50).map(f64::from).collect::<Vec<_>>());
        let mut r = Reservoir::new(1000);
        (0..100_000).for_each(|v| r.add(f64::from(v)));
        let sample = r.sorted();
        let median = quantile(&sample, 0.5).unwrap();
        assert!((median - 50_000.0).abs() < 5_000.0, "{median}");
    }

    #[test]
    fn quantiles_interpolate_like_pandas() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 0.5), Some(2.5));
        assert_eq!(quantile(&v, 1.0), Some(4.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn frequent_items_exact_when_few_and_keep_heavy_hitters() {
        let mut f = FrequentItems::new(4);
        for v in ["a", "b", "a", "c", "a", "b"] {
            f.add(hash_bytes(v.as_bytes()), v);
        }
        assert_eq!(f.top(2), vec![("a".into(), 3), ("b".into(), 2)]);
        let mut f = FrequentItems::new(8);
        for i in 0..10_000 {
            let value = if i % 2 == 0 { "heavy".to_owned() } else { format!("v{i}") };
            f.add(hash_bytes(value.as_bytes()), &value);
        }
        assert_eq!(f.top(1)[0].0, "heavy");
    }
}
