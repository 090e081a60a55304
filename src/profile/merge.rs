//! One profile for a table stored as several part files (a folder table).

use super::column::combine;
use super::drift::{Cdf, value_key};
use super::{ColumnProfile, Profile, QUANTILES, TOP_VALUES, TopValue};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The profile of the concatenation of tables profiled as `parts`:
///
/// - exact: `rows`, `nulls`, `nan`, `true`/`false` counts, `min`/`max`, and
///   `mean`/`std` (combined with Chan et al.'s parallel formulas, equal to
///   those of the concatenation up to rounding);
/// - approximate: `quantiles` (those of the mixture of the parts'
///   distributions, each read from its quantiles, weighted by its values);
///   `top` (counts summed over the parts' top lists, so a value outside some
///   part's list is undercounted); `distinct` (see below).
///
/// `distinct` assumes the parts are samples of one population: each part's
/// `(distinct, values)` gives an estimate of the population's distinct
/// values `D` (solving `distinct = D (1 - exp(-values / D))`), and the union
/// of all values is expected to hold `D (1 - exp(-all values / D))`. A part
/// whose values are (nearly, within the estimate's error) all distinct makes
/// it a key-like column: the parts' counts are summed. The result always lies
/// between the largest part's count and the sum of the parts' counts.
///
/// Columns are matched by name, in the first part's order; a part without a
/// column counts as its rows of nulls.
pub fn merge(parts: &[Profile]) -> Profile {
    let Some(first) = parts.first() else { return Profile::default() };
    if parts.len() == 1 {
        return first.clone();
    }
    let rows = parts.iter().map(|p| p.rows).sum();
    let columns = first
        .columns
        .iter()
        .map(|c| {
            let pieces: Vec<(u64, Option<&ColumnProfile>)> =
                parts.iter().map(|p| (p.rows, p.column(&c.name))).collect();
            merge_column(c, &pieces)
        })
        .collect();
    Profile { rows, columns }
}

fn merge_column(model: &ColumnProfile, pieces: &[(u64, Option<&ColumnProfile>)]) -> ColumnProfile {
    let present: Vec<(u64, &ColumnProfile)> = pieces.iter().filter_map(|(r, c)| c.map(|c| (*r, c))).collect();
    let absent_rows: u64 = pieces.iter().filter(|(_, c)| c.is_none()).map(|(r, _)| r).sum();
    let sum = |f: fn(&ColumnProfile) -> Option<u64>| -> Option<u64> {
        let got: Vec<u64> = present.iter().filter_map(|(_, c)| f(c)).collect();
        (!got.is_empty()).then(|| got.iter().sum())
    };
    let mut out = ColumnProfile {
        name: model.name.clone(),
        data_type: model.data_type.clone(),
        kind: model.kind.clone(),
        nulls: present.iter().map(|(_, c)| c.nulls).sum::<u64>() + absent_rows,
        nan: sum(|c| c.nan),
        true_count: sum(|c| c.true_count),
        false_count: sum(|c| c.false_count),
        ..Default::default()
    };
    out.min = extreme(present.iter().filter_map(|(_, c)| c.min.as_ref()), Ordering::Less);
    out.max = extreme(present.iter().filter_map(|(_, c)| c.max.as_ref()), Ordering::Greater);
    if present.iter().any(|(_, c)| c.distinct.is_some()) {
        out.distinct = Some(distinct(&present));
    }
    if model.kind == "number" {
        merge_moments(&mut out, &present);
        out.quantiles = mixture_quantiles(&present);
    }
    if present.iter().any(|(_, c)| c.top.is_some()) {
        out.top = Some(merge_top(&present));
    }
    out
}

/// The smallest (`Less`) or largest (`Greater`) of JSON numbers or strings.
fn extreme<'a>(values: impl Iterator<Item = &'a Value>, want: Ordering) -> Option<Value> {
    values
        .fold(None, |best: Option<&Value>, v| match best {
            Some(b) if compare_values(v, b) != want => Some(b),
            _ => Some(v),
        })
        .cloned()
}

fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(i), Some(j), ..) => i.cmp(&j),
            (_, _, Some(i), Some(j)) => i.cmp(&j),
            _ => x.as_f64().unwrap_or(f64::NAN).total_cmp(&y.as_f64().unwrap_or(f64::NAN)),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

fn merge_moments(out: &mut ColumnProfile, present: &[(u64, &ColumnProfile)]) {
    let mut acc = (0u64, 0.0, 0.0);
    for (rows, c) in present {
        let n = c.values(*rows);
        if n == 0 {
            continue;
        }
        let Some(mean) = c.mean else { return };
        let m2 = match c.std {
            Some(s) => s * s * (n - 1) as f64,
            None if n == 1 => 0.0,
            None => return,
        };
        acc = combine(acc, (n, mean, m2));
    }
    let (n, mean, m2) = acc;
    out.mean = (n > 0).then_some(mean).filter(|m| m.is_finite());
    out.std = (n > 1).then(|| (m2 / (n - 1) as f64).sqrt()).filter(|s| s.is_finite());
}

/// Quantiles of the mixture of the parts' distributions.
fn mixture_quantiles(present: &[(u64, &ColumnProfile)]) -> Option<Vec<f64>> {
    let parts: Vec<(f64, Cdf)> =
        present.iter().filter_map(|(rows, c)| Some((c.values(*rows) as f64, Cdf::of(c)?))).collect();
    let total: f64 = parts.iter().map(|(w, _)| w).sum();
    if parts.is_empty() || total == 0.0 {
        return None;
    }
    let mixture = |x: f64| parts.iter().map(|(w, f)| w * f.at(x)).sum::<f64>() / total;
    let mut xs: Vec<f64> =
        parts.iter().flat_map(|(_, f)| (0..QUANTILES).map(|i| f.quantile(i as f64 / (QUANTILES - 1) as f64))).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let ps: Vec<f64> = xs.iter().map(|x| mixture(*x)).collect();
    let last = (QUANTILES - 1) as f64;
    Some(
        (0..QUANTILES)
            .map(|i| {
                let p = i as f64 / last;
                // The first breakpoint where the mixture reaches p; linear before it.
                let j = ps.partition_point(|q| *q < p).min(xs.len() - 1);
                if j == 0 || ps[j] == ps[j - 1] {
                    xs[j]
                } else {
                    xs[j - 1] + (xs[j] - xs[j - 1]) * (p - ps[j - 1]) / (ps[j] - ps[j - 1])
                }
            })
            .collect(),
    )
}

fn merge_top(present: &[(u64, &ColumnProfile)]) -> Vec<TopValue> {
    let mut counts: BTreeMap<String, (Value, u64)> = BTreeMap::new();
    for (_, c) in present {
        for t in c.top.as_deref().unwrap_or_default() {
            counts.entry(value_key(&t.value)).or_insert_with(|| (t.value.clone(), 0)).1 += t.count;
        }
    }
    let mut all: Vec<(String, (Value, u64))> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| a.0.cmp(&b.0)));
    all.into_iter().take(TOP_VALUES).map(|(_, (value, count))| TopValue { value, count }).collect()
}

/// See [`merge`].
fn distinct(present: &[(u64, &ColumnProfile)]) -> u64 {
    let parts: Vec<(f64, f64)> = present
        .iter()
        .filter_map(|(rows, c)| {
            let values = rows.saturating_sub(c.nulls) as f64;
            Some((c.distinct? as f64, values))
        })
        .filter(|(_, n)| *n > 0.0)
        .map(|(d, n)| (d.min(n), n))
        .collect();
    let sum: f64 = parts.iter().map(|(d, _)| d).sum();
    let largest = parts.iter().map(|(d, _)| *d).fold(0.0, f64::max);
    let all: f64 = parts.iter().map(|(_, n)| n).sum();
    if parts.is_empty() {
        return 0;
    }
    // Within the HyperLogLog's error of all distinct: a key.
    if parts.iter().any(|(d, n)| *d >= 0.97 * n) {
        return sum.min(all) as u64;
    }
    let population = parts.iter().map(|(d, n)| n * population(*d, *n)).sum::<f64>() / all;
    let expected = population * (1.0 - (-all / population).exp());
    expected.clamp(largest, sum).round() as u64
}

/// The population size `D` with `d = D (1 - exp(-n / D))` (for `d < n`).
fn population(d: f64, n: f64) -> f64 {
    let seen = |pop: f64| pop * (1.0 - (-n / pop).exp());
    let (mut lo, mut hi) = (d, d.max(1.0));
    while seen(hi) < d && hi < 1e18 {
        hi *= 2.0;
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if seen(mid) < d { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}
