//! Drift: how two profiles of the same table differ.
//!
//! - Schema: columns added, removed, or whose type changed.
//! - Per column present in both with the same kind, the population
//!   stability index (PSI) of the "to" distribution against the "from" one:
//!   `sum((b - a) * ln(b / a))` over buckets whose fractions are `a` (from) and
//!   `b` (to), each floored at [`PSI_FLOOR`]. Nulls (and NaN) are one bucket,
//!   so a column that becomes mostly null drifts too.
//!   - numbers: 20 buckets between the "from" quantiles (0.05, ..., 0.95),
//!     open at both ends; the "to" fractions come from its own quantiles,
//!     the distribution function interpolated linearly between them. Also the
//!     Kolmogorov-Smirnov distance (the largest gap between the two
//!     distribution functions, evaluated at every quantile of both sides),
//!     approximate since both are read from quantiles.
//!   - strings and bools: one bucket per value in either side's top values,
//!     one for all other values. A value missing from one side's top list
//!     gets that side's share of its other values spread evenly over its other
//!     distinct values (0 when its top list holds every value).
//!   - other kinds: the null bucket against the non-null one.
//! - A column is flagged as drifted when its PSI exceeds [`PSI_DRIFT`] (0.2,
//!   the industry convention: below 0.1 is stable, 0.1 to 0.2 a moderate
//!   shift worth watching).
//!
//! Both profiles summarize at most a few thousand sampled values per
//! column, so on small tables (under ~500 rows) the PSI of two samples of
//! the same distribution can come out above 0.1 by chance.

use super::{ColumnProfile, Profile};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// PSI above which a column is flagged as drifted.
pub const PSI_DRIFT: f64 = 0.2;
/// PSI above which a shift is worth watching (reported, not flagged).
pub const PSI_WATCH: f64 = 0.1;
/// Smallest bucket fraction in the PSI sum (an empty bucket would make it infinite).
pub const PSI_FLOOR: f64 = 1e-4;

/// A change of a table's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum SchemaChange {
    /// A column only in the "to" profile.
    Added {
        /// Its name.
        column: String,
        /// Its type.
        #[serde(rename = "type")]
        data_type: String,
    },
    /// A column only in the "from" profile.
    Removed {
        /// Its name.
        column: String,
        /// Its type.
        #[serde(rename = "type")]
        data_type: String,
    },
    /// A column in both whose type differs.
    Type {
        /// Its name.
        column: String,
        /// The "from" type.
        from: String,
        /// The "to" type.
        to: String,
    },
}

/// How one column's distribution moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    /// The column's name.
    pub column: String,
    /// Its kind (as in the profile).
    pub kind: String,
    /// Population stability index of "to" against "from".
    pub psi: f64,
    /// Approximate Kolmogorov-Smirnov distance (numbers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks: Option<f64>,
    /// Fraction of nulls (and NaN) in "from" and in "to".
    pub null_fraction: [f64; 2],
    /// Means of "from" and "to" (numbers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<[Option<f64>; 2]>,
    /// Whether the PSI is above [`PSI_DRIFT`].
    pub drifted: bool,
}

/// How a table moved between two profiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDrift {
    /// Rows in "from" and in "to".
    pub rows: [u64; 2],
    /// Columns added, removed or retyped.
    pub schema: Vec<SchemaChange>,
    /// Per column in both (same kind), in "to" order.
    pub columns: Vec<ColumnDrift>,
    /// Names of the drifted columns.
    pub drifted: Vec<String>,
}

/// Compares profile `to` against profile `from` (see the [module](self)).
pub fn compare(from: &Profile, to: &Profile) -> TableDrift {
    let mut schema = Vec::new();
    for c in &from.columns {
        if to.column(&c.name).is_none() {
            schema.push(SchemaChange::Removed { column: c.name.clone(), data_type: c.data_type.clone() });
        }
    }
    let mut columns = Vec::new();
    for b in &to.columns {
        let Some(a) = from.column(&b.name) else {
            schema.push(SchemaChange::Added { column: b.name.clone(), data_type: b.data_type.clone() });
            continue;
        };
        if a.data_type != b.data_type {
            schema.push(SchemaChange::Type {
                column: b.name.clone(),
                from: a.data_type.clone(),
                to: b.data_type.clone(),
            });
        }
        if a.kind == b.kind {
            columns.push(column_drift(a, from.rows, b, to.rows));
        }
    }
    let drifted = columns.iter().filter(|c| c.drifted).map(|c| c.column.clone()).collect();
    TableDrift { rows: [from.rows, to.rows], schema, columns, drifted }
}

fn column_drift(a: &ColumnProfile, rows_a: u64, b: &ColumnProfile, rows_b: u64) -> ColumnDrift {
    let null_a = missing_fraction(a, rows_a);
    let null_b = missing_fraction(b, rows_b);
    let (fractions, ks) = match (a.kind.as_str(), Cdf::of(a), Cdf::of(b)) {
        ("number", Some(fa), Some(fb)) => {
            let edges = fa.interior_edges();
            (vec![fa.bucket_fractions(&edges), fb.bucket_fractions(&edges)], Some(fa.ks(&fb)))
        }
        ("string" | "bool", ..) => {
            let (x, y) = top_fractions(a, rows_a, b, rows_b);
            (vec![x, y], None)
        }
        _ => (vec![vec![1.0], vec![1.0]], None),
    };
    let with_nulls = |f: &[f64], nulls: f64| {
        let mut v: Vec<f64> = f.iter().map(|x| x * (1.0 - nulls)).collect();
        v.push(nulls);
        v
    };
    let psi = psi(&with_nulls(&fractions[0], null_a), &with_nulls(&fractions[1], null_b));
    let mean = (a.kind == "number").then_some([a.mean, b.mean]);
    ColumnDrift {
        column: b.name.clone(),
        kind: b.kind.clone(),
        psi,
        ks,
        null_fraction: [null_a, null_b],
        mean,
        drifted: psi > PSI_DRIFT,
    }
}

/// Nulls and NaN over rows (0 for an empty table).
pub(crate) fn missing_fraction(c: &ColumnProfile, rows: u64) -> f64 {
    if rows == 0 { 0.0 } else { ((c.nulls + c.nan.unwrap_or(0)) as f64 / rows as f64).min(1.0) }
}

/// The population stability index of `b` against `a` (fractions summing to 1).
pub fn psi(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let (x, y) = (x.max(PSI_FLOOR), y.max(PSI_FLOOR));
            (y - x) * (y / x).ln()
        })
        .sum::<f64>()
        .max(0.0)
}

/// A distribution function read from evenly spaced quantiles, linear
/// between them.
#[derive(Debug, Clone)]
pub struct Cdf {
    /// Quantile values, ascending.
    xs: Vec<f64>,
}

impl Cdf {
    /// The distribution of a numeric column, if it has quantiles.
    pub fn of(c: &ColumnProfile) -> Option<Cdf> {
        Cdf::from_quantiles(c.quantiles.as_deref()?)
    }

    /// From quantiles at probabilities `i / (n - 1)`; at least two, finite.
    pub fn from_quantiles(q: &[f64]) -> Option<Cdf> {
        if q.len() < 2 || q.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut xs = q.to_vec();
        xs.sort_by(f64::total_cmp);
        Some(Cdf { xs })
    }

    /// The probability of each quantile.
    fn p(&self, i: usize) -> f64 {
        i as f64 / (self.xs.len() - 1) as f64
    }

    /// P(X <= x).
    pub fn at(&self, x: f64) -> f64 {
        let n = self.xs.len();
        if x < self.xs[0] {
            return 0.0;
        }
        if x >= self.xs[n - 1] {
            return 1.0;
        }
        // The last quantile at or below x (right-continuous at ties).
        let i = self.xs.partition_point(|q| *q <= x) - 1;
        let (lo, hi) = (self.xs[i], self.xs[i + 1]);
        self.p(i) + (self.p(i + 1) - self.p(i)) * (x - lo) / (hi - lo)
    }

    /// The value at probability `p` (inverse of [`Cdf::at`]).
    pub fn quantile(&self, p: f64) -> f64 {
        let last = (self.xs.len() - 1) as f64;
        let pos = p.clamp(0.0, 1.0) * last;
        let i = (pos.floor() as usize).min(self.xs.len() - 2);
        let frac = pos - i as f64;
        self.xs[i] + (self.xs[i + 1] - self.xs[i]) * frac
    }

    /// Smallest and largest value.
    pub fn range(&self) -> (f64, f64) {
        (self.xs[0], self.xs[self.xs.len() - 1])
    }

    /// The distinct interior quantiles: bucket edges with open ends.
    fn interior_edges(&self) -> Vec<f64> {
        let mut edges = self.xs[1..self.xs.len() - 1].to_vec();
        edges.dedup();
        edges
    }

    /// Fractions of the buckets `(-inf, e0], (e0, e1], ..., (ek, inf)`.
    pub fn bucket_fractions(&self, edges: &[f64]) -> Vec<f64> {
        let mut previous = 0.0;
        let mut out: Vec<f64> = edges
            .iter()
            .map(|e| {
                let f = self.at(*e);
                let share = f - previous;
                previous = f;
                share
            })
            .collect();
        out.push(1.0 - previous);
        out
    }

    /// The largest gap between the two distribution functions, at every
    /// quantile of either.
    pub fn ks(&self, other: &Cdf) -> f64 {
        self.xs.iter().chain(&other.xs).map(|x| (self.at(*x) - other.at(*x)).abs()).fold(0.0, f64::max)
    }
}

/// Bucket fractions (of the non-null values) of two string or bool columns
/// over the values of both top lists, plus one bucket for other values.
fn top_fractions(a: &ColumnProfile, rows_a: u64, b: &ColumnProfile, rows_b: u64) -> (Vec<f64>, Vec<f64>) {
    let (_, x, y) = category_buckets(a, rows_a, b, rows_b);
    (x, y)
}

/// The buckets of [`top_fractions`]: their labels (values, then the other
/// values as `None`) and both sides' fractions of the non-null values.
pub(crate) fn category_buckets(
    a: &ColumnProfile,
    rows_a: u64,
    b: &ColumnProfile,
    rows_b: u64,
) -> (Vec<Option<String>>, Vec<f64>, Vec<f64>) {
    let ta = TopShares::of(a, rows_a);
    let tb = TopShares::of(b, rows_b);
    let mut keys: Vec<&String> = ta.shares.keys().chain(tb.shares.keys()).collect();
    keys.sort();
    keys.dedup();
    // Most frequent first (in "from", then "to"), for reading.
    keys.sort_by(|x, y| {
        let key = |k: &str| -(ta.share(k) + tb.share(k));
        key(x).total_cmp(&key(y))
    });
    let side = |t: &TopShares| {
        let mut v: Vec<f64> = keys.iter().map(|k| t.share(k)).collect();
        let listed: f64 = v.iter().sum();
        v.push((1.0 - listed).max(0.0));
        let total: f64 = v.iter().sum();
        if total > 0.0 { v.iter().map(|x| x / total).collect() } else { v }
    };
    let labels = keys.iter().map(|k| Some((*k).clone())).chain([None]).collect();
    (labels, side(&ta), side(&tb))
}

/// A column's top values as shares of its non-null values.
struct TopShares {
    shares: BTreeMap<String, f64>,
    /// The share given to a value not in the list.
    unlisted: f64,
}

impl TopShares {
    fn of(c: &ColumnProfile, rows: u64) -> TopShares {
        let values = rows.saturating_sub(c.nulls) as f64;
        let top = c.top.as_deref().unwrap_or_default();
        if values == 0.0 {
            return TopShares { shares: BTreeMap::new(), unlisted: 0.0 };
        }
        let shares: BTreeMap<String, f64> =
            top.iter().map(|t| (value_key(&t.value), t.count as f64 / values)).collect();
        let listed: f64 = shares.values().sum();
        let rest = (1.0 - listed).max(0.0);
        let others = c.distinct.unwrap_or(0).saturating_sub(top.len() as u64);
        let smallest = shares.values().cloned().fold(f64::INFINITY, f64::min);
        let unlisted = if rest < 1e-12 || others == 0 { 0.0 } else { (rest / others as f64).min(smallest) };
        TopShares { shares, unlisted }
    }

    fn share(&self, key: &str) -> f64 {
        self.shares.get(key).copied().unwrap_or(self.unlisted)
    }
}

/// A top value as a map key (strings as themselves, other JSON as JSON).
pub fn value_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
