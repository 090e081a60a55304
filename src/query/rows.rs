//! Which rows of a table a read keeps by position: the `rows` ranges of
//! random access and the reproducible sample, combined.
//!
//! Positions are rows of the whole table, 0-based, before any filter (the
//! coordinates of `EndpointMetadata.first_row`). A request's ranges are
//! canonicalised once (sorted, merged, empty ones dropped), so two requests
//! naming the same rows plan, pin and cache alike. Parquet scans turn the
//! selection into a row selection (only the pages holding selected rows are
//! read); tables read sequentially apply it as batches stream past.

use super::{Error, sample};
use crate::proto::{Query, RowRange};
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};

/// Ranges one request (or ticket) may name: bounds the ticket's size and the
/// planning work. Clients split bigger random reads into several requests.
pub const MAX_ROW_RANGES: usize = 100_000;

/// Sorted, merged, non-empty ranges `[start, end)`.
pub fn canonical(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.retain(|(s, e)| s < e);
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Checks ranges given by a client (any order, overlaps allowed) and
/// canonicalises them; `what` names the request in errors.
pub fn checked(ranges: Vec<(u64, u64)>, what: &str) -> Result<Vec<(u64, u64)>, String> {
    if ranges.len() > MAX_ROW_RANGES {
        return Err(format!(
            "rows names {} ranges in {what}; at most {MAX_ROW_RANGES} per request (split the read)",
            ranges.len()
        ));
    }
    if let Some((s, e)) = ranges.iter().find(|(s, e)| s > e) {
        return Err(format!("rows: range {s}:{e} in {what} ends before it starts"));
    }
    let named = !ranges.is_empty();
    let canonical = canonical(ranges);
    // No ranges means every row: ranges that all select nothing must not.
    if named && canonical.is_empty() {
        return Err(format!(
            "rows: every range in {what} is empty (START:END selects START to END-1); a read of no rows is not asked for"
        ));
    }
    Ok(canonical)
}

/// Parses the text form `START:END[,START:END|,ROW]...`.
pub fn parse(text: &str) -> Result<Vec<(u64, u64)>, String> {
    let number = |s: &str| {
        s.trim().parse::<u64>().map_err(|_| {
            format!("rows must be ROW or START:END positions separated by commas, not {}", super::limits::excerpt(s))
        })
    };
    text.split(',')
        .map(|part| match part.split_once(':') {
            Some((s, e)) => Ok((number(s)?, number(e)?)),
            None => number(part).and_then(|r| {
                r.checked_add(1).map(|e| (r, e)).ok_or_else(|| format!("rows: position {r} is out of range"))
            }),
        })
        .collect()
}

/// The canonical text form (`a:b`, or `a` for one row), comma-separated.
pub fn display(ranges: &[(u64, u64)]) -> String {
    let parts: Vec<String> =
        ranges.iter().map(|&(s, e)| if e == s + 1 { s.to_string() } else { format!("{s}:{e}") }).collect();
    parts.join(",")
}

/// Rows of `[first, first + len)` that `ranges` (canonical) select.
pub fn count_in(ranges: &[(u64, u64)], first: u64, len: u64) -> u64 {
    let end = first.saturating_add(len);
    overlapping(ranges, first, end).map(|(s, e)| e - s).sum()
}

/// The parts of canonical `ranges` inside `[first, first + len)`.
pub fn clip(ranges: &[(u64, u64)], first: u64, len: u64) -> Vec<(u64, u64)> {
    overlapping(ranges, first, first.saturating_add(len)).collect()
}

/// The parts of canonical `ranges` inside `[first, end)`.
fn overlapping(ranges: &[(u64, u64)], first: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    let from = ranges.partition_point(|&(_, e)| e <= first);
    ranges[from..].iter().take_while(move |&&(s, _)| s < end).map(move |&(s, e)| (s.max(first), e.min(end)))
}

/// What a read keeps by position: `rows` ranges and/or a sample.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    /// Canonical ranges; empty means every row.
    ranges: Vec<(u64, u64)>,
    /// `(seed, threshold)` of the sample.
    sample: Option<(u64, u64)>,
}

impl Positions {
    /// The selection of a ticket's query, `None` when it keeps every row.
    /// Ranges from a ticket are checked, not trusted: canonical and bounded.
    pub fn of(query: &Query) -> Result<Option<Positions>, Error> {
        let ranges: Vec<(u64, u64)> = query.rows.iter().map(|r| (r.start, r.end)).collect();
        if ranges.len() > MAX_ROW_RANGES {
            return Err(Error::invalid(format!("bad ticket: more than {MAX_ROW_RANGES} row ranges")));
        }
        if canonical(ranges.clone()) != ranges {
            return Err(Error::invalid("bad ticket: its row ranges are not sorted, merged and non-empty"));
        }
        let sample = query.sample_threshold.map(|t| (query.seed, t));
        Ok((!ranges.is_empty() || sample.is_some()).then_some(Positions { ranges, sample }))
    }

    /// Whether each of `len` rows starting at table position `first` is kept.
    pub fn keep_mask(&self, first: u64, len: usize) -> Vec<bool> {
        let mut keep = match self.ranges.is_empty() {
            true => vec![true; len],
            false => {
                let mut keep = vec![false; len];
                for (s, e) in overlapping(&self.ranges, first, first + len as u64) {
                    keep[(s - first) as usize..(e - first) as usize].fill(true);
                }
                keep
            }
        };
        if let Some((seed, threshold)) = self.sample {
            for (i, k) in keep.iter_mut().enumerate().filter(|(_, k)| **k) {
                *k = sample::row_hash(seed, first + i as u64) < threshold;
            }
        }
        keep
    }

    /// A Parquet row selection of `len` rows starting at `first`; ranges
    /// alone cost one selector per range, not per row.
    pub fn row_selection(&self, first: u64, len: usize) -> RowSelection {
        if self.sample.is_some() {
            return selection_of_mask(&self.keep_mask(first, len));
        }
        let mut selectors = Vec::new();
        let mut at = first;
        for (s, e) in overlapping(&self.ranges, first, first + len as u64) {
            if s > at {
                selectors.push(RowSelector::skip((s - at) as usize));
            }
            selectors.push(RowSelector::select((e - s) as usize));
            at = e;
        }
        if at < first + len as u64 {
            selectors.push(RowSelector::skip((first + len as u64 - at) as usize));
        }
        RowSelection::from(selectors)
    }
}

/// A row selection keeping the rows whose mask is true.
fn selection_of_mask(mask: &[bool]) -> RowSelection {
    let mut selectors: Vec<RowSelector> = Vec::new();
    let mut i = 0;
    while i < mask.len() {
        let run = mask[i..].iter().take_while(|&&k| k == mask[i]).count();
        selectors.push(if mask[i] { RowSelector::select(run) } else { RowSelector::skip(run) });
        i += run;
    }
    RowSelection::from(selectors)
}

/// The proto form of canonical ranges.
pub fn to_proto(ranges: &[(u64, u64)]) -> Vec<RowRange> {
    ranges.iter().map(|&(start, end)| RowRange { start, end }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_merges_and_drops_empty_ranges() {
        assert_eq!(canonical(vec![(5, 9), (0, 2), (1, 3), (9, 10), (4, 4)]), vec![(0, 3), (5, 10)]);
        assert_eq!(canonical(vec![]), vec![]);
    }

    #[test]
    fn text_round_trips() {
        let r = checked(parse("250,0:100,99:120,7").unwrap(), "t").unwrap();
        assert_eq!(r, vec![(0, 120), (250, 251)]);
        assert_eq!(display(&r), "0:120,250");
        for bad in ["", "a", "1:b", "1:2:3", "-1", "18446744073709551615"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(checked(vec![(5, 3)], "t").unwrap_err().contains("5:3"));
        assert!(checked(vec![(0, 1); MAX_ROW_RANGES + 1], "t").unwrap_err().contains("at most"));
    }

    #[test]
    fn counts_masks_and_selections_agree() {
        let p = Positions { ranges: vec![(3, 7), (10, 12), (30, 40)], sample: None };
        assert_eq!(count_in(&p.ranges, 5, 10), 4);
        assert_eq!(count_in(&p.ranges, 0, 100), 16);
        assert_eq!(count_in(&p.ranges, 12, 18), 0);
        assert_eq!(clip(&p.ranges, 5, 30), vec![(5, 7), (10, 12), (30, 35)]);
        for (first, len) in [(0, 50), (5, 7), (12, 18), (35, 2)] {
            let mask = p.keep_mask(first, len);
            assert_eq!(mask.iter().filter(|k| **k).count() as u64, count_in(&p.ranges, first, len as u64));
            let sel = p.row_selection(first, len);
            assert_eq!(sel.row_count(), mask.iter().filter(|k| **k).count());
            assert_eq!(sel, selection_of_mask(&mask));
        }
        let t = sample::threshold_for_fraction(0.5).unwrap();
        let s = Positions { ranges: vec![(10, 20)], sample: Some((7, t)) };
        let mask = s.keep_mask(0, 30);
        assert!(mask[..10].iter().chain(&mask[20..]).all(|k| !k));
        assert_eq!(s.row_selection(0, 30).row_count(), mask.iter().filter(|k| **k).count());
    }
}
