//! A small self-contained HTML report of drift between revisions: one
//! table per compared table, and for each drifted column a pair of
//! histograms as inline SVG (no scripts, no external files).

use super::drift::{Cdf, TableDrift, category_buckets, missing_fraction};
use super::{ColumnProfile, Profile};
use std::fmt::Write;

/// One compared table, as the report shows it.
#[derive(Debug, Clone, Copy)]
pub struct ReportTable<'a> {
    /// The table's path in the package.
    pub path: &'a str,
    /// What [`super::compare`] found.
    pub drift: &'a TableDrift,
    /// The "from" profile.
    pub from: &'a Profile,
    /// The "to" profile.
    pub to: &'a Profile,
}

const FROM_COLOR: &str = "#4878a8";
const TO_COLOR: &str = "#e07b39";
const BINS: usize = 20;

/// The report as an HTML document; `title` names the two revisions.
pub fn report(title: &str, tables: &[ReportTable<'_>]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:.5em 0}}\
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
tr.drifted{{background:#fde8e0}}.legend span{{display:inline-block;width:1em;height:1em;margin:0 .3em 0 1em;vertical-align:middle}}\
</style></head><body>\n<h1>Drift: {t}</h1>\n<p class=\"legend\"><span style=\"background:{FROM_COLOR}\"></span>from\
<span style=\"background:{TO_COLOR}\"></span>to</p>\n",
        t = escape(title)
    );
    if tables.is_empty() {
        out.push_str("<p>No profiled table changed between the revisions.</p>\n");
    }
    for t in tables {
        table_section(&mut out, t);
    }
    out.push_str("</body></html>\n");
    out
}

fn table_section(out: &mut String, t: &ReportTable<'_>) {
    let d = t.drift;
    let _ = writeln!(out, "<h2>{}</h2>\n<p>rows {} &rarr; {}</p>", escape(t.path), d.rows[0], d.rows[1]);
    if !d.schema.is_empty() {
        out.push_str("<ul>\n");
        for change in &d.schema {
            let line = match change {
                super::SchemaChange::Added { column, data_type } => format!("added column {column} ({data_type})"),
                super::SchemaChange::Removed { column, data_type } => format!("removed column {column} ({data_type})"),
                super::SchemaChange::Type { column, from, to } => format!("column {column}: type {from} → {to}"),
            };
            let _ = writeln!(out, "<li>{}</li>", escape(&line));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<table><tr><th>column</th><th>kind</th><th>PSI</th><th>KS</th><th>nulls from</th><th>nulls to</th><th>drifted</th></tr>\n");
    for c in &d.columns {
        let ks = c.ks.map(|k| format!("{k:.3}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td>{:.3}</td><td>{ks}</td><td>{:.1}%</td><td>{:.1}%</td><td>{}</td></tr>",
            if c.drifted { " class=\"drifted\"" } else { "" },
            escape(&c.column),
            escape(&c.kind),
            c.psi,
            c.null_fraction[0] * 100.0,
            c.null_fraction[1] * 100.0,
            if c.drifted { "yes" } else { "" }
        );
    }
    out.push_str("</table>\n");
    for c in d.columns.iter().filter(|c| c.drifted) {
        let (Some(a), Some(b)) = (t.from.column(&c.column), t.to.column(&c.column)) else { continue };
        let _ = writeln!(out, "<h3>{} <small>PSI {:.3}</small></h3>", escape(&c.column), c.psi);
        out.push_str(&histogram(a, t.from.rows, b, t.to.rows));
        out.push('\n');
    }
}

/// Labels and both sides' fractions of all rows, nulls last.
fn buckets(a: &ColumnProfile, rows_a: u64, b: &ColumnProfile, rows_b: u64) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    let (na, nb) = (missing_fraction(a, rows_a), missing_fraction(b, rows_b));
    let (mut labels, fa, fb) = match (a.kind.as_str(), Cdf::of(a), Cdf::of(b)) {
        ("number", Some(ca), Some(cb)) => {
            let (lo, hi) = (ca.range().0.min(cb.range().0), ca.range().1.max(cb.range().1));
            let width = (hi - lo) / BINS as f64;
            let edges: Vec<f64> = (1..BINS).map(|i| lo + width * i as f64).collect();
            let labels = (0..BINS).map(|i| short_number(lo + width * i as f64)).collect();
            (labels, ca.bucket_fractions(&edges), cb.bucket_fractions(&edges))
        }
        ("string" | "bool", ..) => {
            let (labels, fa, fb) = category_buckets(a, rows_a, b, rows_b);
            (labels.into_iter().map(|l| l.unwrap_or_else(|| "(other)".into())).collect(), fa, fb)
        }
        _ => (vec!["(values)".into()], vec![1.0], vec![1.0]),
    };
    let scale = |f: Vec<f64>, nulls: f64| f.into_iter().map(|x| x * (1.0 - nulls)).chain([nulls]).collect();
    labels.push("(null)".into());
    (labels, scale(fa, na), scale(fb, nb))
}

fn short_number(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e5 || x.abs() < 1e-3) { format!("{x:.2e}") } else { format!("{x:.3}") }
}

/// Paired bars, "from" left and "to" right in each bucket, as inline SVG.
fn histogram(a: &ColumnProfile, rows_a: u64, b: &ColumnProfile, rows_b: u64) -> String {
    let (labels, fa, fb) = buckets(a, rows_a, b, rows_b);
    let n = labels.len();
    let (width, height, top, bottom) = (40.0 + 28.0 * n as f64, 220.0, 10.0, 90.0);
    let plot = height - top - bottom;
    let peak = fa.iter().chain(&fb).cloned().fold(0.0, f64::max).max(1e-9);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
        escape(&format!("histograms of {}", b.name))
    );
    let _ = write!(svg, "<line x1=\"30\" y1=\"{y}\" x2=\"{width}\" y2=\"{y}\" stroke=\"#888\"/>", y = top + plot);
    let _ = write!(svg, "<text x=\"2\" y=\"{}\" font-size=\"10\">{:.0}%</text>", top + 8.0, peak * 100.0);
    for (i, label) in labels.iter().enumerate() {
        let x = 32.0 + 28.0 * i as f64;
        for (k, (f, color)) in [(fa[i], FROM_COLOR), (fb[i], TO_COLOR)].into_iter().enumerate() {
            let h = plot * f / peak;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"{:.1}\" fill=\"{color}\"><title>{}: {:.1}%</title></rect>",
                x + 12.0 * k as f64,
                top + plot - h,
                h,
                escape(label),
                f * 100.0
            );
        }
        let shown: String = label.chars().take(14).collect();
        let _ = write!(
            svg,
            "<text font-size=\"9\" transform=\"translate({:.1},{:.1}) rotate(60)\">{}</text>",
            x + 6.0,
            top + plot + 4.0,
            escape(&shown)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Text made safe for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
