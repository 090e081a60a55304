//! Cutting a sequence of items (manifest entries) into contiguous runs, one
//! per endpoint: evenly, or balanced by weight (content sizes). The weighted
//! cut can be fed a stretch of items at a time and told to pass over a
//! stretch it knows only the total weight of, so a manifest's blocks are read
//! only where a run may end.

/// Cuts `n` items into `count` (at least 1, at most one per item) contiguous
/// runs `[start, end)` of equal length, give or take one.
pub(super) fn split_even(n: usize, count: usize) -> Vec<(usize, usize)> {
    let count = count.clamp(1, n.max(1));
    (0..count).map(|i| (i * n / count, (i + 1) * n / count)).collect()
}

/// Cuts `weights.len()` items into `count` (at least 1, at most one per item)
/// contiguous runs `[start, end)` of about equal total weight.
#[cfg(test)]
pub(super) fn split_weighted(weights: &[u64], count: usize) -> Vec<(usize, usize)> {
    let mut cut = WeightedCut::new(weights.len(), weights.iter().sum(), count);
    cut.feed(weights);
    cut.finish()
}

/// The greedy weighted cut: walking the items in order, a run closes once
/// the weight so far reaches its share of the total (`total * k / count` for
/// the k-th run), keeping at least one item for every run still to come.
/// Fed all the weights it gives what [`split_weighted`] gives; a stretch that
/// [`passes`](Self::passes) may be skipped knowing only its total weight,
/// with the same result.
pub(super) struct WeightedCut {
    /// Items in all.
    n: usize,
    /// Their total weight (at least 1).
    total: u64,
    /// Runs wanted (at least 1, at most one per item).
    count: usize,
    runs: Vec<(usize, usize)>,
    /// First item of the open run.
    start: usize,
    /// Weight of the items walked so far.
    acc: u64,
    /// Next item to walk.
    next: usize,
}

impl WeightedCut {
    /// A cut of `n` items weighing `total` in all into `count` runs.
    pub(super) fn new(n: usize, total: u64, count: usize) -> Self {
        let count = count.clamp(1, n.max(1));
        Self { n, total: total.max(1), count, runs: Vec::with_capacity(count), start: 0, acc: 0, next: 0 }
    }

    /// Whether the next `items` items, weighing `weight` in all, close no
    /// run: then [`skip`](Self::skip) them instead of feeding their weights.
    pub(super) fn passes(&self, items: usize, weight: u64) -> bool {
        let runs_left = self.count - self.runs.len();
        runs_left <= 1 || (self.acc + weight < self.share() && self.next + items <= self.n - runs_left)
    }

    /// Walks past `items` items weighing `weight` in all; only after
    /// [`passes`](Self::passes) said they close no run.
    pub(super) fn skip(&mut self, items: usize, weight: u64) {
        debug_assert!(self.passes(items, weight));
        self.acc += weight;
        self.next += items;
    }

    /// Walks the next items, one weight each.
    pub(super) fn feed(&mut self, weights: &[u64]) {
        for w in weights {
            let i = self.next;
            self.acc += w;
            self.next += 1;
            let runs_left = self.count - self.runs.len();
            let items_left = self.n - i - 1;
            if runs_left > 1 && (self.acc >= self.share() || items_left < runs_left) {
                self.runs.push((self.start, i + 1));
                self.start = i + 1;
            }
        }
    }

    /// The runs, once every item was walked.
    pub(super) fn finish(mut self) -> Vec<(usize, usize)> {
        debug_assert_eq!(self.next, self.n, "every item walked");
        self.runs.push((self.start, self.n));
        self.runs
    }

    /// The weight at which the open run closes.
    fn share(&self) -> u64 {
        (self.total as u128 * (self.runs.len() as u128 + 1) / self.count as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::{WeightedCut, split_even, split_weighted};
    use crate::query::sample::splitmix64;

    /// Numbers in `0..end`, repeatable: the `i`-th draws `splitmix64(i)`.
    struct Draw(u64);

    impl Draw {
        fn below(&mut self, end: u64) -> u64 {
            self.0 += 1;
            splitmix64(self.0) % end
        }
    }

    #[test]
    fn even_runs_are_what_equal_weights_give() {
        for n in [0, 1, 2, 3, 10, 1023, 1024, 100_001] {
            for count in [0, 1, 2, 3, 7, 64, 200_000] {
                assert_eq!(split_even(n, count), split_weighted(&vec![1; n], count), "{n} items, {count} runs");
            }
        }
    }

    fn check(weights: &[u64], count: usize) -> Vec<(usize, usize)> {
        let runs = split_weighted(weights, count);
        // Contiguous, non-empty (unless there is nothing), covering everything.
        assert_eq!(runs.first().map(|r| r.0), Some(0));
        assert_eq!(runs.last().map(|r| r.1), Some(weights.len()));
        for pair in runs.windows(2) {
            assert_eq!(pair[0].1, pair[1].0);
        }
        if !weights.is_empty() {
            assert!(runs.iter().all(|(s, e)| s < e), "{runs:?}");
        }
        runs
    }

    #[test]
    fn splits_into_the_count_asked_within_the_items() {
        assert_eq!(check(&[1; 10], 3).len(), 3);
        assert_eq!(check(&[1; 10], 10).len(), 10);
        assert_eq!(check(&[1; 3], 8).len(), 3);
        assert_eq!(check(&[1; 5], 0).len(), 1);
        assert_eq!(check(&[], 4), vec![(0, 0)]);
        assert_eq!(check(&[0; 6], 3).len(), 3);
    }

    #[test]
    fn balances_by_weight() {
        // One heavy item gets a run of its own.
        assert_eq!(check(&[100, 1, 1, 1, 1], 2), vec![(0, 1), (1, 5)]);
        assert_eq!(check(&[1, 1, 1, 1, 100], 2), vec![(0, 4), (4, 5)]);
        assert_eq!(check(&[5; 8], 4), vec![(0, 2), (2, 4), (4, 6), (6, 8)]);
    }

    /// Skipping the blocks that pass, as planning does over a manifest's
    /// blocks, cuts exactly where walking every weight does, and walks few.
    #[test]
    fn skipping_blocks_that_pass_cuts_the_same() {
        let mut rng = Draw(7);
        for round in 0..400 {
            let n = rng.below(3_000) as usize;
            let weights: Vec<u64> = match round % 4 {
                0 => (0..n).map(|_| rng.below(2_000)).collect(),
                1 => (0..n).map(|_| if rng.below(100) == 0 { 1 << 40 } else { rng.below(10) }).collect(),
                2 => vec![0; n],
                _ => (0..n).map(|i| if i + 1 == n { 1 << 30 } else { 1 }).collect(),
            };
            let block = 1 + rng.below(300) as usize;
            let count = rng.below(40) as usize;
            let mut cut = WeightedCut::new(n, weights.iter().sum(), count);
            let mut fed = 0;
            for chunk in weights.chunks(block) {
                let weight = chunk.iter().sum();
                if cut.passes(chunk.len(), weight) {
                    cut.skip(chunk.len(), weight);
                } else {
                    cut.feed(chunk);
                    fed += 1;
                }
            }
            let want = split_weighted(&weights, count);
            assert_eq!(cut.finish(), want, "round {round}: {n} items, blocks of {block}, {count} runs");
            // A run ends in at most one block each, but for the last
            // items kept one per run still to come.
            let blocks = n.div_ceil(block);
            assert!(fed <= want.len() + count.div_ceil(block) + 1 || fed == blocks, "round {round}: fed {fed}");
        }
    }
}
