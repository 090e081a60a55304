//! Per-column accumulators: one pass over the batches, bounded memory,
//! answers independent of batch boundaries (see [`super::sketch`]).

use super::ColumnProfile;
use super::sketch::{FrequentItems, HyperLogLog, Reservoir, hash_bytes, hash_u64, quantile};
use super::{MAX_STRING_CHARS, QUANTILES, SAMPLE_SIZE, TOP_CAPACITY, TOP_VALUES, TopValue};
use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, make_array};
use arrow::datatypes::*;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::Value;

/// What statistics a column gets, by its (dictionary value) type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Integers, floats, decimals: min/max, mean/std, quantiles, distinct.
    Number,
    /// UTF-8 strings: min/max (truncated), distinct, most frequent values.
    String,
    /// Booleans: true and false counts.
    Bool,
    /// Dates, times, timestamps, durations: min/max as ISO text, distinct.
    Temporal,
    /// Binary values: distinct.
    Binary,
    /// Anything else (nested, null, unions): nulls only.
    Other,
}

impl Kind {
    /// The kind of a column of type `t`.
    pub fn of(t: &DataType) -> Kind {
        use DataType::*;
        match t {
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32 | Float64 => {
                Kind::Number
            }
            Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => Kind::Number,
            Utf8 | LargeUtf8 | Utf8View => Kind::String,
            Boolean => Kind::Bool,
            Date32 | Date64 | Timestamp(..) | Time32(..) | Time64(..) | Duration(..) => Kind::Temporal,
            Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => Kind::Binary,
            Dictionary(_, value) => Kind::of(value),
            _ => Kind::Other,
        }
    }

    /// The name written in a profile's `kind`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Bool => "bool",
            Kind::Temporal => "temporal",
            Kind::Binary => "binary",
            Kind::Other => "other",
        }
    }
}

/// One column's running state.
#[derive(Debug)]
pub enum Accumulator {
    /// See [`Kind::Number`].
    Number(Box<Numbers>),
    /// See [`Kind::String`].
    String(Box<Strings>),
    /// See [`Kind::Bool`].
    Bool { trues: u64, falses: u64 },
    /// See [`Kind::Temporal`].
    Temporal(Box<Temporals>),
    /// See [`Kind::Binary`].
    Binary(Box<HyperLogLog>, u64),
    /// See [`Kind::Other`].
    Other,
}

impl Accumulator {
    /// An empty accumulator for a column of type `t`.
    pub fn new(t: &DataType) -> Self {
        match Kind::of(t) {
            Kind::Number => Accumulator::Number(Box::default()),
            Kind::String => Accumulator::String(Box::default()),
            Kind::Bool => Accumulator::Bool { trues: 0, falses: 0 },
            Kind::Temporal => Accumulator::Temporal(Box::new(Temporals::new(value_type(t)))),
            Kind::Binary => Accumulator::Binary(Box::default(), 0),
            Kind::Other => Accumulator::Other,
        }
    }

    /// Adds the values of one array (nulls are counted by the caller).
    /// Arrays of an unexpected type are skipped, never a panic.
    pub fn update(&mut self, array: &dyn Array) {
        if let DataType::Dictionary(_, value) = array.data_type() {
            if let Ok(plain) = arrow::compute::cast(array, value) {
                self.update(&plain);
            }
            return;
        }
        match self {
            Accumulator::Number(n) => n.update(array),
            Accumulator::String(s) => s.update(array),
            Accumulator::Bool { trues, falses } => {
                if let Some(b) = array.as_boolean_opt() {
                    *trues += b.true_count() as u64;
                    *falses += b.false_count() as u64;
                }
            }
            Accumulator::Temporal(t) => t.update(array),
            Accumulator::Binary(h, values) => binary_hashes(array, |hash| {
                *values += 1;
                h.add(hash)
            }),
            Accumulator::Other => {}
        }
    }

    /// Writes the statistics into `column`.
    pub fn finish(self, column: &mut ColumnProfile) {
        match self {
            Accumulator::Number(n) => n.finish(column),
            Accumulator::String(s) => s.finish(column),
            Accumulator::Bool { trues, falses } => {
                column.true_count = Some(trues);
                column.false_count = Some(falses);
                column.distinct = Some(u64::from(trues > 0) + u64::from(falses > 0));
                let mut top: Vec<TopValue> = [(true, trues), (false, falses)]
                    .into_iter()
                    .filter(|(_, c)| *c > 0)
                    .map(|(v, count)| TopValue { value: Value::Bool(v), count })
                    .collect();
                top.sort_by_key(|t| std::cmp::Reverse(t.count));
                column.top = Some(top);
            }
            Accumulator::Temporal(t) => t.finish(column),
            Accumulator::Binary(h, values) => column.distinct = Some(h.estimate().min(values)),
            Accumulator::Other => {}
        }
    }
}

fn value_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, value) => value_type(value),
        other => other.clone(),
    }
}

/// Calls `f` with each valid value of a primitive array.
#[inline]
fn for_each_valid<T: ArrowPrimitiveType>(array: &PrimitiveArray<T>, mut f: impl FnMut(T::Native)) {
    let values = array.values();
    match array.nulls().filter(|n| n.null_count() > 0) {
        None => values.iter().for_each(|v| f(*v)),
        Some(nulls) => nulls.valid_indices().for_each(|i| f(values[i])),
    }
}

/// Values per chunk of the mean/variance accumulation: the chunks are cut
/// from the stream of values, not from batches, so the floating-point sums
/// (and the profile's bytes) do not depend on how the data was batched.
const CHUNK: usize = 1024;

/// Count, mean and sum of squared deviations, by chunks combined with Chan
/// et al.'s parallel update of Welford's algorithm.
#[derive(Debug, Clone, Default)]
pub struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
    chunk: Vec<f64>,
}

impl Moments {
    #[inline]
    fn add(&mut self, v: f64) {
        self.chunk.push(v);
        if self.chunk.len() == CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let n = self.chunk.len() as f64;
        let mean = self.chunk.iter().sum::<f64>() / n;
        let m2 = self.chunk.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>();
        (self.n, self.mean, self.m2) = combine((self.n, self.mean, self.m2), (self.chunk.len() as u64, mean, m2));
        self.chunk.clear();
    }

    /// Count, mean and sample standard deviation (ddof = 1).
    fn finish(mut self) -> (u64, Option<f64>, Option<f64>) {
        self.flush();
        let mean = (self.n > 0).then_some(self.mean).filter(|m| m.is_finite());
        let std = (self.n > 1).then(|| (self.m2 / (self.n - 1) as f64).sqrt()).filter(|s| s.is_finite());
        (self.n, mean, std)
    }
}

/// Chan et al.'s combination of (count, mean, M2) of two disjoint sets.
pub fn combine(a: (u64, f64, f64), b: (u64, f64, f64)) -> (u64, f64, f64) {
    let (na, ma, m2a) = a;
    let (nb, mb, m2b) = b;
    if na == 0 {
        return b;
    }
    if nb == 0 {
        return a;
    }
    let n = na + nb;
    let (fa, fb, f) = (na as f64, nb as f64, n as f64);
    let delta = mb - ma;
    (n, ma + delta * fb / f, m2a + m2b + delta * delta * fa * fb / f)
}

/// Running statistics of a numeric column.
#[derive(Debug)]
pub struct Numbers {
    min_int: Option<i128>,
    max_int: Option<i128>,
    min_float: Option<f64>,
    max_float: Option<f64>,
    nan: u64,
    floats: bool,
    moments: Moments,
    distinct: HyperLogLog,
    sample: Reservoir,
}

impl Default for Numbers {
    fn default() -> Self {
        Self {
            min_int: None,
            max_int: None,
            min_float: None,
            max_float: None,
            nan: 0,
            floats: false,
            moments: Moments::default(),
            distinct: HyperLogLog::default(),
            sample: Reservoir::new(SAMPLE_SIZE),
        }
    }
}

impl Numbers {
    fn update(&mut self, array: &dyn Array) {
        use DataType::*;
        match array.data_type() {
            Int8 => self.ints(array.as_primitive::<Int8Type>()),
            Int16 => self.ints(array.as_primitive::<Int16Type>()),
            Int32 => self.ints(array.as_primitive::<Int32Type>()),
            Int64 => self.ints(array.as_primitive::<Int64Type>()),
            UInt8 => self.ints(array.as_primitive::<UInt8Type>()),
            UInt16 => self.ints(array.as_primitive::<UInt16Type>()),
            UInt32 => self.ints(array.as_primitive::<UInt32Type>()),
            UInt64 => {
                let a = array.as_primitive::<UInt64Type>();
                if let (Some(lo), Some(hi)) = (arrow::compute::min(a), arrow::compute::max(a)) {
                    self.bounds(i128::from(lo), i128::from(hi));
                }
                for_each_valid(a, |v| self.value(hash_u64(v), v as f64));
            }
            Float16 => self.float_values(array.as_primitive::<Float16Type>(), |v| v.to_f64()),
            Float32 => self.float_values(array.as_primitive::<Float32Type>(), f64::from),
            Float64 => self.float_values(array.as_primitive::<Float64Type>(), |v| v),
            Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => {
                if let Ok(f) = arrow::compute::cast(array, &Float64) {
                    self.float_values(f.as_primitive::<Float64Type>(), |v| v)
                }
            }
            _ => {}
        }
    }

    fn ints<T>(&mut self, a: &PrimitiveArray<T>)
    where
        T: ArrowNumericType,
        T::Native: Into<i64>,
    {
        if let (Some(lo), Some(hi)) = (arrow::compute::min(a), arrow::compute::max(a)) {
            self.bounds(i128::from(lo.into()), i128::from(hi.into()));
        }
        for_each_valid(a, |v| {
            let v: i64 = v.into();
            self.value(hash_u64(v as u64), v as f64)
        });
    }

    fn bounds(&mut self, lo: i128, hi: i128) {
        self.min_int = Some(self.min_int.map_or(lo, |m| m.min(lo)));
        self.max_int = Some(self.max_int.map_or(hi, |m| m.max(hi)));
    }

    #[inline]
    fn value(&mut self, hash: u64, v: f64) {
        self.distinct.add(hash);
        self.moments.add(v);
        self.sample.add(v);
    }

    fn float_values<T: ArrowPrimitiveType>(&mut self, a: &PrimitiveArray<T>, to_f64: impl Fn(T::Native) -> f64) {
        self.floats = true;
        let (mut lo, mut hi) = (self.min_float.unwrap_or(f64::INFINITY), self.max_float.unwrap_or(f64::NEG_INFINITY));
        let mut any = self.min_float.is_some();
        for_each_valid(a, |v| {
            let v = to_f64(v);
            if v.is_nan() {
                self.nan += 1;
                return;
            }
            any = true;
            lo = lo.min(v);
            hi = hi.max(v);
            // -0.0 and 0.0 are one value.
            self.distinct.add(hash_u64((v + 0.0).to_bits()));
            self.moments.add(v);
            if v.is_finite() {
                self.sample.add(v);
            }
        });
        if any {
            (self.min_float, self.max_float) = (Some(lo), Some(hi));
        }
    }

    fn finish(self, column: &mut ColumnProfile) {
        let (values, mean, std) = self.moments.finish();
        column.mean = mean;
        column.std = std;
        // An estimate above the number of values is known to be too high.
        column.distinct = Some(self.distinct.estimate().min(values));
        if self.floats {
            column.nan = Some(self.nan);
            column.min = self.min_float.and_then(finite_number);
            column.max = self.max_float.and_then(finite_number);
        } else {
            column.min = self.min_int.map(int_value);
            column.max = self.max_int.map(int_value);
        }
        let sample = self.sample.sorted();
        if !sample.is_empty() {
            let last = (QUANTILES - 1) as f64;
            column.quantiles =
                Some((0..QUANTILES).filter_map(|i| quantile(&sample, i as f64 / last)).collect::<Vec<_>>());
        }
    }
}

/// A float as a JSON number; NaN and infinities (which JSON cannot hold) as none.
pub fn finite_number(v: f64) -> Option<Value> {
    serde_json::Number::from_f64(v).map(Value::Number)
}

fn int_value(v: i128) -> Value {
    match (i64::try_from(v), u64::try_from(v)) {
        (Ok(i), _) => Value::from(i),
        (_, Ok(u)) => Value::from(u),
        _ => Value::Null,
    }
}

/// The first [`MAX_STRING_CHARS`] characters of `s`.
pub fn truncate(s: &str) -> &str {
    if s.len() <= MAX_STRING_CHARS {
        return s;
    }
    match s.char_indices().nth(MAX_STRING_CHARS) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// Running statistics of a string column.
#[derive(Debug)]
pub struct Strings {
    values: u64,
    min: Option<String>,
    max: Option<String>,
    distinct: HyperLogLog,
    top: FrequentItems,
}

impl Default for Strings {
    fn default() -> Self {
        Self {
            values: 0,
            min: None,
            max: None,
            distinct: HyperLogLog::default(),
            top: FrequentItems::new(TOP_CAPACITY),
        }
    }
}

impl Strings {
    fn update(&mut self, array: &dyn Array) {
        use arrow::compute::{max_string, max_string_view, min_string, min_string_view};
        let (lo, hi) = match array.data_type() {
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                a.iter().flatten().for_each(|s| self.value(s));
                (min_string(a), max_string(a))
            }
            DataType::LargeUtf8 => {
                let a = array.as_string::<i64>();
                a.iter().flatten().for_each(|s| self.value(s));
                (min_string(a), max_string(a))
            }
            DataType::Utf8View => {
                let a = array.as_string_view();
                a.iter().flatten().for_each(|s| self.value(s));
                (min_string_view(a), max_string_view(a))
            }
            _ => return,
        };
        // Truncation keeps order (a <= b implies prefix(a) <= prefix(b)), so
        // the truncated minimum is the minimum of the truncated values.
        if let Some(lo) = lo.map(truncate)
            && self.min.as_deref().is_none_or(|m| lo < m)
        {
            self.min = Some(lo.to_owned());
        }
        if let Some(hi) = hi.map(truncate)
            && self.max.as_deref().is_none_or(|m| hi > m)
        {
            self.max = Some(hi.to_owned());
        }
    }

    #[inline]
    fn value(&mut self, s: &str) {
        let hash = hash_bytes(s.as_bytes());
        self.values += 1;
        self.distinct.add(hash);
        let shown = truncate(s);
        self.top.add(if shown.len() == s.len() { hash } else { hash_bytes(shown.as_bytes()) }, shown);
    }

    fn finish(self, column: &mut ColumnProfile) {
        column.min = self.min.map(Value::String);
        column.max = self.max.map(Value::String);
        column.distinct = Some(self.distinct.estimate().min(self.values));
        column.top = Some(
            self.top
                .top(TOP_VALUES)
                .into_iter()
                .map(|(value, count)| TopValue { value: Value::String(value), count })
                .collect(),
        );
    }
}

/// Running statistics of a date, time, timestamp or duration column: its
/// values as 64-bit integers of its unit.
#[derive(Debug)]
pub struct Temporals {
    data_type: DataType,
    values: u64,
    min: Option<i64>,
    max: Option<i64>,
    distinct: HyperLogLog,
}

impl Temporals {
    fn new(data_type: DataType) -> Self {
        Self { data_type, values: 0, min: None, max: None, distinct: HyperLogLog::default() }
    }

    fn update(&mut self, array: &dyn Array) {
        let Some(ints) = as_integers(array) else { return };
        let (min, max) = (arrow::compute::min(&ints), arrow::compute::max(&ints));
        if let (Some(lo), Some(hi)) = (min, max) {
            self.min = Some(self.min.map_or(lo, |m| m.min(lo)));
            self.max = Some(self.max.map_or(hi, |m| m.max(hi)));
        }
        for_each_valid(&ints, |v| {
            self.values += 1;
            self.distinct.add(hash_u64(v as u64))
        });
    }

    fn finish(self, column: &mut ColumnProfile) {
        column.min = self.min.and_then(|v| iso(&self.data_type, v)).map(Value::String);
        column.max = self.max.and_then(|v| iso(&self.data_type, v)).map(Value::String);
        column.distinct = Some(self.distinct.estimate().min(self.values));
    }
}

/// The values of a 32- or 64-bit temporal array as Int64.
fn as_integers(array: &dyn Array) -> Option<PrimitiveArray<Int64Type>> {
    let width = array.data_type().primitive_width()?;
    let as_int = if width == 4 { DataType::Int32 } else { DataType::Int64 };
    let data = array.to_data().into_builder().data_type(as_int).build().ok()?;
    let ints = arrow::compute::cast(&make_array(data), &DataType::Int64).ok()?;
    Some(ints.as_primitive::<Int64Type>().clone())
}

/// One value of a temporal type as Arrow prints it (ISO 8601).
fn iso(data_type: &DataType, v: i64) -> Option<String> {
    let width = data_type.primitive_width()?;
    let ints: ArrayRef = if width == 4 {
        std::sync::Arc::new(PrimitiveArray::<Int32Type>::from(vec![i32::try_from(v).ok()?]))
    } else {
        std::sync::Arc::new(PrimitiveArray::<Int64Type>::from(vec![v]))
    };
    let data = ints.to_data().into_builder().data_type(data_type.clone()).build().ok()?;
    let array = make_array(data);
    let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()).ok()?;
    Some(formatter.value(0).to_string())
}

/// Calls `f` with the hash of each valid value of a binary array.
fn binary_hashes(array: &dyn Array, mut f: impl FnMut(u64)) {
    match array.data_type() {
        DataType::Binary => array.as_binary::<i32>().iter().flatten().for_each(|b| f(hash_bytes(b))),
        DataType::LargeBinary => array.as_binary::<i64>().iter().flatten().for_each(|b| f(hash_bytes(b))),
        DataType::BinaryView => array.as_binary_view().iter().flatten().for_each(|b| f(hash_bytes(b))),
        DataType::FixedSizeBinary(_) => array.as_fixed_size_binary().iter().flatten().for_each(|b| f(hash_bytes(b))),
        _ => {}
    }
}
