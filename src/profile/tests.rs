//! Profiles of small arrays checked against hand-computed statistics;
//! determinism; merge against the concatenation; drift on known shifts.

use super::*;
use arrow::array::*;
use arrow::datatypes::{DataType, Field, Int32Type, TimeUnit};
use serde_json::json;
use std::sync::Arc;

fn profile_of(columns: Vec<(&str, ArrayRef)>) -> Profile {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut p = Profiler::new(&batch.schema());
    p.update(&batch);
    p.finish()
}

fn profile_in_batches(batch: &RecordBatch, size: usize) -> Profile {
    let mut p = Profiler::new(&batch.schema());
    let mut offset = 0;
    while offset < batch.num_rows() {
        let len = size.min(batch.num_rows() - offset);
        p.update(&batch.slice(offset, len));
        offset += len;
    }
    p.finish()
}

/// A deterministic normal sample (Box-Muller over SplitMix64).
fn normal(n: usize, mean: f64, std: f64, seed: u64) -> Vec<f64> {
    let mut state = seed;
    let mut uniform = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (uniform().max(1e-300), uniform());
            mean + std * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        })
        .collect()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
}

#[test]
fn integers_exact() {
    let p = profile_of(vec![("x", Arc::new(Int64Array::from(vec![Some(4), None, Some(1), Some(3), Some(2), None])))]);
    let c = &p.columns[0];
    assert_eq!(p.rows, 6);
    assert_eq!((c.kind.as_str(), c.data_type.as_str(), c.nulls), ("number", "Int64", 2));
    assert_eq!((c.min.clone(), c.max.clone()), (Some(json!(1)), Some(json!(4))));
    assert_eq!(c.mean, Some(2.5));
    // Sample std of 1..4: sqrt(5/3).
    assert!(close(c.std, (5.0f64 / 3.0).sqrt()));
    assert_eq!(c.distinct, Some(4));
    let q = c.quantiles.as_ref().unwrap();
    assert_eq!(q.len(), QUANTILES);
    assert_eq!((q[0], q[10], q[20]), (1.0, 2.5, 4.0));
    assert_eq!(c.nan, None);
    // Extreme integers stay exact.
    let p = profile_of(vec![("u", Arc::new(UInt64Array::from(vec![u64::MAX, 0])))]);
    assert_eq!(p.columns[0].max, Some(json!(u64::MAX)));
}

#[test]
fn floats_skip_nan_and_never_write_non_finite() {
    let p = profile_of(vec![("f", Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN), None, Some(-0.5)])))]);
    let c = &p.columns[0];
    assert_eq!((c.nulls, c.nan), (1, Some(1)));
    assert_eq!((c.min.clone(), c.max.clone()), (Some(json!(-0.5)), Some(json!(1.5))));
    assert_eq!(c.mean, Some(0.5));
    assert_eq!(c.distinct, Some(2));
    let p = profile_of(vec![("f", Arc::new(Float32Array::from(vec![f32::INFINITY, 1.0])))]);
    let c = &p.columns[0];
    assert_eq!((c.max.clone(), c.mean, c.std), (None, None, None));
    assert_eq!(c.min, Some(json!(1.0)));
    let text = serde_json::to_string(&p.to_json()).unwrap();
    assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
    // All null: no statistics at all.
    let p = profile_of(vec![("f", Arc::new(Float64Array::from(vec![None, None])))]);
    let c = &p.columns[0];
    assert_eq!((c.nulls, c.min.clone(), c.mean, c.quantiles.clone(), c.distinct), (2, None, None, None, Some(0)));
}

#[test]
fn strings_bools_and_dates() {
    let long = "é".repeat(150);
    let s = StringArray::from(vec![Some("b"), Some("a"), None, Some("b"), Some(long.as_str()), Some("b")]);
    let p = profile_of(vec![
        ("s", Arc::new(s) as ArrayRef),
        ("b", Arc::new(BooleanArray::from(vec![Some(true), Some(false), Some(true), None, Some(true), Some(true)]))),
        ("d", Arc::new(Date32Array::from(vec![Some(19723), None, Some(0), Some(19724), None, None]))),
    ]);
    let s = &p.columns[0];
    assert_eq!((s.kind.as_str(), s.nulls, s.distinct), ("string", 1, Some(3)));
    assert_eq!(s.min, Some(json!("a")));
    assert_eq!(s.max, Some(json!("é".repeat(100))));
    let top = s.top.as_ref().unwrap();
    assert_eq!((top[0].value.clone(), top[0].count), (json!("b"), 3));
    assert_eq!((top[1].value.clone(), top[1].count), (json!("a"), 1));
    let b = &p.columns[1];
    assert_eq!((b.true_count, b.false_count, b.nulls, b.distinct), (Some(4), Some(1), 1, Some(2)));
    assert_eq!(b.top.as_ref().unwrap()[0], TopValue { value: json!(true), count: 4 });
    let d = &p.columns[2];
    assert_eq!(
        (d.kind.as_str(), d.min.clone(), d.max.clone()),
        ("temporal", Some(json!("1970-01-01")), Some(json!("2024-01-02")))
    );
}

#[test]
fn every_type_without_panicking() {
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)]), None]);
    let dict: DictionaryArray<Int32Type> = vec![Some("x"), Some("y"), Some("x")].into_iter().collect();
    let ts = TimestampMicrosecondArray::from(vec![Some(1_700_000_000_000_000), None, Some(0)]).with_timezone("UTC");
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("list", Arc::new(list)),
        ("null", Arc::new(NullArray::new(2))),
        ("dict", Arc::new(dict.slice(0, 2))),
        ("ts", Arc::new(ts.slice(0, 2))),
        ("bin", Arc::new(BinaryArray::from(vec![Some(b"ab".as_ref()), None]))),
        ("dec", Arc::new(Decimal128Array::from(vec![Some(12345), None]).with_precision_and_scale(10, 2).unwrap())),
        ("f16", arrow::compute::cast(&Float32Array::from(vec![Some(1.5), None]), &DataType::Float16).unwrap()),
        ("view", Arc::new(StringViewArray::from(vec![Some("v"), None]))),
        ("time", Arc::new(Time32SecondArray::from(vec![Some(3600), None]))),
        ("dur", Arc::new(DurationNanosecondArray::from(vec![Some(5), None]))),
    ];
    let p = profile_of(columns);
    let by = |n: &str| p.column(n).unwrap();
    assert_eq!((by("list").kind.as_str(), by("list").nulls), ("other", 1));
    assert_eq!(by("null").nulls, 2);
    assert_eq!((by("dict").kind.as_str(), by("dict").distinct), ("string", Some(2)));
    assert_eq!(by("ts").min, Some(json!("2023-11-14T22:13:20Z")));
    assert_eq!(by("bin").distinct, Some(1));
    assert_eq!(by("dec").min, Some(json!(123.45)));
    assert_eq!(by("f16").mean, Some(1.5));
    assert_eq!(by("view").top.as_ref().unwrap()[0].count, 1);
    assert_eq!(by("time").min, Some(json!("01:00:00")));
    assert!(by("dur").min.is_some());
    let _ = DataType::Timestamp(TimeUnit::Second, None);
    let _ = Field::new("unused", DataType::Null, true);
}

fn mixed_batch(n: usize) -> RecordBatch {
    let xs = normal(n, 10.0, 3.0, 7);
    RecordBatch::try_from_iter(vec![
        ("x", Arc::new(Float64Array::from(xs.clone())) as ArrayRef),
        (
            "i",
            Arc::new(Int64Array::from_iter((0..n as i64).map(|i| (i % 17 != 0).then_some(i * 7 % 1000)))) as ArrayRef,
        ),
        // Value k of 20 occurs 2k + 1 times in every 400 rows.
        (
            "s",
            Arc::new(StringArray::from_iter((0..n).map(|i| Some(format!("w{}", ((i % 400) as f64).sqrt() as usize)))))
                as ArrayRef,
        ),
    ])
    .unwrap()
}

#[test]
fn deterministic_whatever_the_batches() {
    let batch = mixed_batch(20_000);
    let one = profile_in_batches(&batch, 20_000);
    let again = profile_in_batches(&batch, 20_000);
    let split = profile_in_batches(&batch, 777);
    let text = |p: &Profile| crate::manifest::json::encode(&p.to_json(), crate::manifest::json::Style::Canonical);
    assert_eq!(text(&one), text(&again));
    assert_eq!(text(&one), text(&split));
    // The sample is beyond its capacity here: quantiles are estimates.
    let q = one.columns[0].quantiles.as_ref().unwrap();
    assert!((q[10] - 10.0).abs() < 0.3, "{q:?}");
}

#[test]
fn merge_sums_distinct_keys() {
    let ids = |from: i64| profile_of(vec![("id", Arc::new(Int64Array::from_iter_values(from..from + 3000)))]);
    let merged = merge(&[ids(0), ids(3000), ids(6000)]);
    let d = merged.columns[0].distinct.unwrap() as f64;
    assert!((d - 9000.0).abs() < 0.03 * 9000.0, "{d}");
    let same = merge(&[ids(0), ids(0)]);
    assert!(same.columns[0].distinct.unwrap() >= 2900);
}

#[test]
fn merge_equals_the_concatenation() {
    let batch = mixed_batch(9_000);
    let whole = profile_in_batches(&batch, 9_000);
    let parts: Vec<Profile> = [(0, 2_000), (2_000, 4_500), (6_500, 2_500)]
        .iter()
        .map(|(o, l)| profile_in_batches(&batch.slice(*o, *l), 1000))
        .collect();
    let merged = merge(&parts);
    assert_eq!(merged.rows, whole.rows);
    for (m, w) in merged.columns.iter().zip(&whole.columns) {
        assert_eq!((&m.name, m.nulls, m.nan, &m.min, &m.max), (&w.name, w.nulls, w.nan, &w.min, &w.max));
        if let Some(mean) = w.mean {
            assert!(close(m.mean, mean), "{:?} {mean}", m.mean);
            assert!(close(m.std, w.std.unwrap()), "{:?} {:?}", m.std, w.std);
        }
        // An approximation (see `merge`): these columns repeat their values
        // in cycles, which the estimate's random-sampling model overrates.
        if let (Some(a), Some(b)) = (m.distinct, w.distinct) {
            assert!((a as f64 - b as f64).abs() <= 0.15 * b as f64, "{} distinct {a} vs {b}", m.name);
        }
    }
    let (mq, wq) = (merged.columns[0].quantiles.as_ref().unwrap(), whole.columns[0].quantiles.as_ref().unwrap());
    assert!((mq[10] - wq[10]).abs() < 0.2, "{mq:?} {wq:?}");
    let (mt, wt) = (merged.columns[2].top.as_ref().unwrap(), whole.columns[2].top.as_ref().unwrap());
    assert_eq!(mt[0], wt[0]);
    assert_eq!(merge(&parts[..1]), parts[0]);
    assert_eq!(merge(&[]), Profile::default());
}

fn table(xs: Vec<f64>, words: Vec<&str>) -> Profile {
    profile_of(vec![("x", Arc::new(Float64Array::from(xs))), ("w", Arc::new(StringArray::from(words)))])
}

#[test]
fn drift_flags_a_shift_and_not_a_resample() {
    let n = 5_000;
    let words =
        |shift: bool| (0..n).map(|i| if shift && i % 2 == 0 { "new" } else { ["a", "b", "c"][i % 3] }).collect();
    let base = table(normal(n, 0.0, 1.0, 1), words(false));
    let resampled = table(normal(n, 0.0, 1.0, 2), words(false));
    let shifted = table(normal(n, 1.0, 1.0, 3), words(true));
    let stable = compare(&base, &resampled);
    assert!(stable.drifted.is_empty(), "{stable:?}");
    assert!(stable.columns.iter().all(|c| c.psi < drift::PSI_WATCH), "{stable:?}");
    assert!(stable.schema.is_empty());
    let moved = compare(&base, &shifted);
    assert_eq!(moved.drifted, vec!["x".to_owned(), "w".to_owned()]);
    let x = &moved.columns[0];
    assert!(x.psi > 0.5 && x.ks.unwrap() > 0.3, "{x:?}");
}

#[test]
fn drift_reports_schema_changes_and_nulls() {
    let a = profile_of(vec![
        ("k", Arc::new(Int32Array::from(vec![1, 2, 3]))),
        ("gone", Arc::new(Int32Array::from(vec![1, 2, 3]))),
    ]);
    let b = profile_of(vec![
        ("k", Arc::new(Int64Array::from(vec![None, None, Some(3)]))),
        ("new", Arc::new(StringArray::from(vec!["x", "y", "z"]))),
    ]);
    let d = compare(&a, &b);
    assert_eq!(
        d.schema,
        vec![
            SchemaChange::Removed { column: "gone".into(), data_type: "Int32".into() },
            SchemaChange::Type { column: "k".into(), from: "Int32".into(), to: "Int64".into() },
            SchemaChange::Added { column: "new".into(), data_type: "Utf8".into() },
        ]
    );
    assert_eq!(d.drifted, vec!["k".to_owned()]);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["schema"][1], json!({"change": "type", "column": "k", "from": "Int32", "to": "Int64"}));
}

#[test]
fn html_has_one_svg_per_drifted_column() {
    let n = 2_000;
    let a = table(normal(n, 0.0, 1.0, 1), vec!["a"; n]);
    let b = table(normal(n, 3.0, 1.0, 2), vec!["b"; n]);
    let d = compare(&a, &b);
    let page = html::report("p@1 -> p@2", &[html::ReportTable { path: "t<1>.parquet", drift: &d, from: &a, to: &b }]);
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(page.contains("t&lt;1&gt;.parquet") && !page.contains("<script"));
}

#[test]
fn json_round_trip() {
    let p = profile_in_batches(&mixed_batch(100), 100);
    assert_eq!(Profile::from_json(&p.to_json()), Some(p.clone()));
    let meta = json!({"sheaf": {"profile": p.to_json()}});
    assert_eq!(Profile::of_meta(&meta), Some(p));
    assert_eq!(Profile::of_meta(&json!({})), None);
}
