//! Reproducible sampling by row position.
//!
//! A row at position `p` of a table (its index in the whole table, before
//! any filter) is kept iff `row_hash(seed, p) < threshold`, with
//! `row_hash(seed, p) = splitmix64(seed ^ splitmix64(p))`. The decision
//! depends on nothing but the seed and the position, so the sample is the
//! same whatever the partitioning, batch sizes or client. splitmix64 is a
//! bijection of u64, so distinct positions have distinct hashes and an exact
//! count (`sample_rows`) is a threshold too.

use std::collections::BinaryHeap;

/// The splitmix64 finalizer (Steele, Lea and Flood), a bijection of u64.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The hash deciding whether the row at `position` is sampled.
pub fn row_hash(seed: u64, position: u64) -> u64 {
    splitmix64(seed ^ splitmix64(position))
}

/// Threshold keeping a fraction `f` of rows; `None` keeps every row.
pub fn threshold_for_fraction(f: f64) -> Option<u64> {
    if f >= 1.0 {
        None
    } else {
        // f * 2^64, saturating; f <= 0 keeps nothing.
        Some((f.max(0.0) * 18_446_744_073_709_551_616.0) as u64)
    }
}

/// Threshold keeping exactly `n` of `total_rows` rows; `None` keeps every
/// row. Memory is O(min(n, total - n)).
pub fn threshold_for_count(seed: u64, total_rows: u64, n: u64) -> Option<u64> {
    if n >= total_rows {
        return None;
    }
    if n == 0 {
        return Some(0);
    }
    if n <= total_rows / 2 {
        // The n smallest hashes: the threshold is one above the largest of them.
        let mut heap = BinaryHeap::with_capacity(n as usize);
        for p in 0..total_rows {
            let h = row_hash(seed, p);
            if heap.len() < n as usize {
                heap.push(h);
            } else if h < *heap.peek().expect("non-empty") {
                heap.pop();
                heap.push(h);
            }
        }
        Some(heap.peek().expect("n > 0") + 1)
    } else {
        // Drop the (total - n) largest: the threshold is the smallest of them.
        let drop = (total_rows - n) as usize;
        let mut heap = BinaryHeap::with_capacity(drop);
        for p in 0..total_rows {
            let h = std::cmp::Reverse(row_hash(seed, p));
            if heap.len() < drop {
                heap.push(h);
            } else if h < *heap.peek().expect("non-empty") {
                heap.pop();
                heap.push(h);
            }
        }
        Some(heap.peek().expect("drop > 0").0)
    }
}

/// Whether each of `len` rows starting at `first` is kept.
pub fn keep_mask(seed: u64, threshold: u64, first: u64, len: usize) -> Vec<bool> {
    (0..len as u64).map(|i| row_hash(seed, first + i) < threshold).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors() {
        // Reference values, so other languages can check their implementation.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(row_hash(0, 0), splitmix64(splitmix64(0)));
    }

    #[test]
    fn fraction_is_roughly_kept() {
        let t = threshold_for_fraction(0.25).unwrap();
        let kept = keep_mask(42, t, 0, 100_000).into_iter().filter(|k| *k).count();
        assert!((23_000..27_000).contains(&kept), "{kept}");
        assert_eq!(threshold_for_fraction(1.0), None);
    }

    #[test]
    fn exact_counts() {
        for n in [0, 1, 10, 500, 999] {
            let t = threshold_for_count(9, 1000, n).unwrap();
            let kept = keep_mask(9, t, 0, 1000).into_iter().filter(|k| *k).count() as u64;
            assert_eq!(kept, n);
        }
        assert_eq!(threshold_for_count(9, 1000, 1000), None);
    }
}
