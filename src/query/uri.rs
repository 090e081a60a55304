//! Dataset URIs: how a client names a slice of a table.
//!
//! ```text
//! sheaf://OWNER/NAME[@HASH_PREFIX|:TAG][/PATH][?PARAM=VALUE&...]
//! ```
//!
//! Parameters (values percent-encoded; `+` is a plus sign, not a space):
//! `columns=a,b`, `filter=<SQL expression>`, `limit=N`, `sample=F` (0..=1),
//! `sample_rows=N`, `seed=S`, `partitions=N`, `compression=zstd|lz4`,
//! `content=true` (manifest table only), `rows=START:END[,START:END|,ROW]...`
//! (random access by table position, see [`super::rows`]). Unknown
//! parameters are an error.

use super::Error;
use super::limits::excerpt;
use crate::proto;
use crate::registry::{PackageName, PackageRef, Revision};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use std::fmt;

/// URI scheme of dataset URIs.
pub const SCHEME: &str = "sheaf://";

/// IPC body compression a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression (the default: every client decodes it).
    #[default]
    None,
    /// Zstandard.
    Zstd,
    /// LZ4 frame.
    Lz4,
}

impl Compression {
    /// The wire name (`""`, `zstd`, `lz4`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "" | "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd),
            "lz4" => Ok(Compression::Lz4),
            other => {
                Err(Error::invalid(format!("compression must be zstd or lz4, not {}", super::limits::excerpt(other))))
            }
        }
    }
}

/// The query part of a dataset URI.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuerySpec {
    /// Columns to return, in order; empty for all.
    pub columns: Vec<String>,
    /// SQL filter expression.
    pub filter: Option<String>,
    /// Row limit.
    pub limit: Option<u64>,
    /// Fraction of rows to keep (0..=1).
    pub sample: Option<f64>,
    /// Exact number of rows to keep.
    pub sample_rows: Option<u64>,
    /// Sampling seed.
    pub seed: u64,
    /// Requested number of partitions (endpoints).
    pub partitions: Option<u32>,
    /// IPC compression.
    pub compression: Compression,
    /// Manifest table: include file contents.
    pub content: bool,
    /// Only these table rows (canonical `[start, end)` ranges, see
    /// [`super::rows`]); empty means every row.
    pub rows: Vec<(u64, u64)>,
}

impl QuerySpec {
    /// Checks what both forms of a request share: ranges and combinations.
    fn check(&self, has_path: bool) -> Result<(), String> {
        if let Some(f) = self.sample.filter(|f| !(0.0..=1.0).contains(f)) {
            return Err(format!("sample must be between 0 and 1, not {f}"));
        }
        if let Some(n) = self.partitions.filter(|n| *n == 0 || *n > 100_000) {
            return Err(format!("partitions must be between 1 and 100000, not {n}"));
        }
        if self.sample.is_some() && self.sample_rows.is_some() {
            return Err("give sample or sample_rows, not both".into());
        }
        if self.content && has_path {
            return Err("content=true applies to the manifest table (a URI without a path)".into());
        }
        Ok(())
    }
}

/// The package, revision and checked path of a typed request.
fn target(
    package: &str,
    revision: Option<&proto::dataset_request::Revision>,
    path: &str,
) -> Result<(PackageName, Revision, String), Error> {
    use proto::dataset_request::Revision as R;
    let r: PackageRef = package.parse()?;
    let name = r.package;
    if r.subpath.is_some() {
        return Err(Error::invalid(format!(
            "package {}: give the table as path, not in the package",
            excerpt(package)
        )));
    }
    let in_package = package.contains(['@', ':']);
    let revision = match revision {
        None => r.revision,
        Some(_) if in_package => {
            return Err(Error::invalid(format!(
                "package {} already names a revision; do not also give top_hash or tag",
                excerpt(package)
            )));
        }
        Some(R::TopHash(h)) => Revision::hash(h)?,
        Some(R::Tag(t)) => Revision::tag(t)?,
    };
    if !path.is_empty() {
        crate::manifest::key::validate(path)
            .map_err(|why| Error::invalid(format!("invalid path {} in {name}: {why}", excerpt(path))))?;
    }
    Ok((name, revision, path.to_owned()))
}

/// A parsed dataset URI.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetUri {
    /// The package.
    pub package: PackageName,
    /// The revision asked for.
    pub revision: Revision,
    /// Table path inside the package; empty for the manifest table.
    pub path: String,
    /// What to read.
    pub query: QuerySpec,
}

impl DatasetUri {
    /// Parses `sheaf://OWNER/NAME[@REV][/PATH][?QUERY]`; the `sheaf://` prefix
    /// is optional.
    pub fn parse(text: &str) -> Result<Self, Error> {
        super::limits::check_uri(text)?;
        let bad = |msg: String| Error::invalid(format!("invalid dataset URI {}: {msg}", excerpt(text)));
        let (r, path, params) = split_uri(text).map_err(bad)?;
        let mut spec = QuerySpec::default();
        for (key, value) in params {
            let key = key.as_str();
            let number = |what: &str| -> Result<u64, Error> {
                value
                    .parse()
                    .map_err(|_| bad(format!("{what} must be a non-negative integer, not {}", excerpt(&value))))
            };
            match key {
                "columns" => {
                    spec.columns = column_names(&value).map_err(&bad)?;
                }
                "filter" => spec.filter = Some(value.clone()).filter(|f| !f.trim().is_empty()),
                "limit" => spec.limit = Some(number("limit")?),
                "sample" => {
                    let f: f64 =
                        value.parse().map_err(|_| bad(format!("sample must be a number, not {}", excerpt(&value))))?;
                    spec.sample = Some(f);
                }
                "sample_rows" => spec.sample_rows = Some(number("sample_rows")?),
                "seed" => spec.seed = number("seed")?,
                "partitions" => {
                    let n = number("partitions")?;
                    spec.partitions = Some(u32::try_from(n).unwrap_or(u32::MAX));
                }
                "compression" => spec.compression = Compression::parse(&value).map_err(|e| bad(e.to_string()))?,
                "rows" => {
                    spec.rows =
                        super::rows::parse(&value).and_then(|r| super::rows::checked(r, "the URI")).map_err(&bad)?
                }
                "content" => {
                    spec.content = match value.as_str() {
                        "true" | "1" | "" => true,
                        "false" | "0" => false,
                        other => return Err(bad(format!("content must be true or false, not {}", excerpt(other)))),
                    }
                }
                other => {
                    return Err(bad(format!(
                        "unknown parameter {} (known: columns, filter, limit, sample, sample_rows, seed, partitions, compression, content, rows)",
                        excerpt(other)
                    )));
                }
            }
        }
        spec.check(!path.is_empty()).map_err(bad)?;
        Ok(DatasetUri { package: r.package, revision: r.revision, path, query: spec })
    }

    /// The dataset a typed request names, checked by the same rules as the
    /// text form. Column names are taken exactly as given (blanks and commas
    /// included; the text form quotes such names, see [`column_names`]).
    pub fn from_request(request: &proto::DatasetRequest) -> Result<Self, Error> {
        let (package, revision, path) = target(&request.package, request.revision.as_ref(), &request.path)?;
        let bad = |msg: String| Error::invalid(format!("invalid dataset request for {package}: {msg}"));
        if request.message.is_some() || !request.session.is_empty() || request.part.is_some() {
            return Err(bad("message, session and part apply only to DoPut".into()));
        }
        if request.columns.iter().any(String::is_empty) {
            return Err(bad("columns holds an empty name (leave columns empty to read every column)".into()));
        }
        let query = QuerySpec {
            columns: request.columns.clone(),
            filter: Some(request.filter.clone()).filter(|f| !f.trim().is_empty()),
            limit: request.limit,
            sample: request.sample,
            sample_rows: request.sample_rows,
            seed: request.seed,
            partitions: request.partitions,
            compression: Compression::parse(&request.compression).map_err(|e| bad(e.to_string()))?,
            content: request.content,
            rows: super::rows::checked(request.rows.iter().map(|r| (r.start, r.end)).collect(), "the request")
                .map_err(bad)?,
        };
        query.check(!path.is_empty()).map_err(bad)?;
        Ok(DatasetUri { package, revision, path, query })
    }

    /// The URI of a whole table of a pinned revision (no query).
    pub fn table(package: &PackageName, top_hash: &str, path: &str) -> DatasetUri {
        DatasetUri {
            package: package.clone(),
            revision: Revision::Hash(top_hash.to_owned()),
            path: path.to_owned(),
            query: QuerySpec::default(),
        }
    }

    /// The same URI with the revision pinned to `top_hash`.
    pub fn pinned(&self, top_hash: &str) -> DatasetUri {
        DatasetUri { revision: Revision::Hash(top_hash.to_owned()), ..self.clone() }
    }
}

/// A URI's package reference, decoded path and decoded parameters.
type SplitUri = (PackageRef, String, Vec<(String, String)>);

/// The names of a (decoded) `columns` value: a comma-separated list, blanks
/// around a name trimmed; a name in double quotes is taken as written, SQL's
/// way (`"a,b"` holds a comma, `" a"` a blank, `""` inside one is a quote).
/// Empty entries are skipped; an empty quoted name is refused.
pub fn column_names(value: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = value.trim_start();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut name = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(format!("columns: a quoted name is not closed: {}", excerpt(value))),
                    Some((i, '"')) if quoted[i + 1..].starts_with('"') => {
                        name.push('"');
                        chars.next();
                    }
                    Some((i, '"')) => break i + 1,
                    Some((_, c)) => name.push(c),
                }
            };
            if name.is_empty() {
                return Err("columns: an empty quoted name (leave columns out to read every column)".into());
            }
            names.push(name);
            rest = quoted[end..].trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(format!("columns: text after a quoted name: {}", excerpt(value))),
            }
        } else {
            let (name, after) = rest.split_once(',').unwrap_or((rest, ""));
            if !name.trim().is_empty() {
                names.push(name.trim().to_owned());
            }
            rest = after.trim_start();
        }
    }
    Ok(names)
}

/// A column name as `columns=` lists it: quoted when it holds a comma or a
/// quote, starts with one, or has blanks at its edges.
fn listed_column(name: &str) -> std::borrow::Cow<'_, str> {
    let plain = !name.is_empty() && !name.contains([',', '"']) && name.trim() == name;
    match plain {
        true => name.into(),
        false => format!("\"{}\"", name.replace('"', "\"\"")).into(),
    }
}

/// Splits `sheaf://OWNER/NAME[@REV][/PATH][?QUERY]` (the scheme is
/// optional) into the package reference, the decoded path (empty when there
/// is none) and the decoded parameters, refusing a parameter given twice.
fn split_uri(text: &str) -> Result<SplitUri, String> {
    let rest = text.strip_prefix(SCHEME).unwrap_or(text);
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    // Package and revision are split off the raw text; the path is decoded
    // after, so an encoded '@', ':' or '?' in a path stays part of it.
    let r: PackageRef = location.parse().map_err(|e: crate::registry::Error| e.to_string())?;
    let path = match &r.subpath {
        None => String::new(),
        Some(raw) => {
            let path = percent_decode_str(raw).decode_utf8().map_err(|e| e.to_string())?.into_owned();
            crate::manifest::key::validate(&path).map_err(|why| format!("path {}: {why}", excerpt(&path)))?;
            path
        }
    };
    let mut params = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !seen.insert(key.to_owned()) {
            return Err(format!("parameter {} given twice", excerpt(key)));
        }
        let value = percent_decode_str(value).decode_utf8().map_err(|e| e.to_string())?.into_owned();
        params.push((key.to_owned(), value));
    }
    Ok((r, path, params))
}

/// Where DoPut writes: `sheaf://OWNER/NAME[@HASH_PREFIX|:TAG]/PATH.parquet[?message=TEXT]`.
/// With a revision, the write is based on exactly that revision and fails if
/// `latest` has moved; without one it lands on whatever is latest.
#[derive(Debug, Clone, PartialEq)]
pub struct PutTarget {
    /// The package (created by the first write).
    pub package: PackageName,
    /// The revision the write is based on.
    pub revision: Revision,
    /// The logical key written: a `.parquet` path.
    pub path: String,
    /// The new revision's message.
    pub message: Option<String>,
    /// The write session this upload is a part of (then `path` may also be
    /// a folder, and nothing is committed).
    pub session: Option<String>,
    /// The part's position in a folder table.
    pub part: Option<u32>,
}

/// The longest file or folder name a write may create (`NAME_MAX` of
/// common file systems).
const MAX_NAME_BYTES: usize = 255;

/// Why no file system could hold a table at `path`: a file or folder name
/// longer than [`MAX_NAME_BYTES`] (nor could `sheaf install` write it).
fn name_problem(path: &str) -> Option<String> {
    path.split('/').any(|segment| segment.len() > MAX_NAME_BYTES).then(|| {
        format!(
            "a file or folder name in the path is longer than {MAX_NAME_BYTES} bytes; no file system could install it"
        )
    })
}

/// Why a write session cannot write a part to the table at `path`: a part
/// is Parquet, so the table is a `.parquet` file or a folder (a name without
/// an extension).
fn part_path_problem(path: &str) -> Option<&'static str> {
    let parquet = path.to_ascii_lowercase().ends_with(".parquet");
    (!parquet && path.rsplit('/').next().is_some_and(|name| name.contains('.'))).then_some(
        "a part is written as Parquet: the path must be a .parquet file or a folder (a name without an extension)",
    )
}

/// Why a table written through a write session (a Flight SQL bulk ingest)
/// cannot be at `path` in a package, if it cannot: not a logical key, a
/// name too long for a file system, or neither a `.parquet` file nor a
/// folder.
pub fn session_table_problem(path: &str) -> Option<String> {
    if let Err(why) = crate::manifest::key::validate(path) {
        return Some(format!("{path:?} cannot be a path in a package: {why}"));
    }
    name_problem(path).or_else(|| part_path_problem(path).map(str::to_owned))
}

impl PutTarget {
    /// Checks the path and the options that go together: a part upload
    /// (`session`) names a Parquet file or a folder, and takes no revision
    /// nor message (its session has them); a single upload names a Parquet
    /// file.
    fn checked(self, bad: impl Fn(&str) -> Error) -> Result<Self, Error> {
        let parquet = self.path.to_ascii_lowercase().ends_with(".parquet");
        if self.path.is_empty() {
            return Err(bad("DoPut needs the path of the table to write (a .parquet file)"));
        }
        if let Some(why) = name_problem(&self.path) {
            return Err(bad(&why));
        }
        match &self.session {
            None if !parquet => Err(bad("DoPut writes a Parquet table: the path must end with .parquet")),
            None if self.part.is_some() => Err(bad("part applies only to an upload in a write session")),
            Some(_) if self.revision != Revision::Latest || self.message.is_some() => {
                Err(bad("an upload in a write session takes no revision nor message: its session has them"))
            }
            Some(_) => match part_path_problem(&self.path) {
                Some(why) => Err(bad(why)),
                None => Ok(self),
            },
            None => Ok(self),
        }
    }

    /// Parses a DoPut descriptor's URI.
    pub fn parse(text: &str) -> Result<Self, Error> {
        super::limits::check_uri(text)?;
        let bad = |msg: String| Error::invalid(format!("invalid DoPut URI {}: {msg}", excerpt(text)));
        let (r, path, params) = split_uri(text).map_err(bad)?;
        let (mut message, mut session, mut part) = (None, None, None);
        for (key, value) in params {
            match key.as_str() {
                "message" => message = Some(value),
                "session" => session = Some(value),
                "part" => {
                    // Part keys carry the number in five digits: their text
                    // order is the folder's row order.
                    let number =
                        value.parse::<u64>().map_err(|_| bad(format!("part={} is not a number", excerpt(&value))))?;
                    if number > u64::from(crate::registry::MAX_PART) {
                        return Err(bad(format!(
                            "part={number} is out of range: parts are numbered 0 to {}",
                            crate::registry::MAX_PART
                        )));
                    }
                    part = Some(number as u32);
                }
                other => {
                    return Err(bad(format!(
                        "unknown parameter {} for DoPut (known: message, session, part)",
                        excerpt(other)
                    )));
                }
            }
        }
        PutTarget { package: r.package, revision: r.revision, path, message, session, part }.checked(|m| bad(m.into()))
    }

    /// The DoPut target of a typed request (its path, revision and message;
    /// read options are refused).
    pub fn from_request(request: &proto::DatasetRequest) -> Result<Self, Error> {
        let (package, revision, path) = target(&request.package, request.revision.as_ref(), &request.path)?;
        let what = package.to_string();
        let bad = |msg: &str| Error::invalid(format!("invalid DoPut request for {what}: {msg}"));
        let read_options = proto::DatasetRequest {
            package: String::new(),
            revision: None,
            path: String::new(),
            message: None,
            session: String::new(),
            part: None,
            ..request.clone()
        };
        if read_options != proto::DatasetRequest::default() {
            return Err(bad("only package, revision, path, message, session and part apply to DoPut"));
        }
        let session = Some(request.session.clone()).filter(|s| !s.is_empty());
        PutTarget { package, revision, path, message: request.message.clone(), session, part: request.part }
            .checked(bad)
    }
}

/// Characters escaped in paths: the URI's delimiters and the revision marks,
/// so any logical key round-trips (`/` stays literal).
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'?')
    .add(b'#')
    .add(b'@')
    .add(b':')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Characters escaped in query values: controls, space and the URI's own
/// delimiters.
const VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'&').add(b'=').add(b'%').add(b'#').add(b'+').add(b'"').add(b'?');

impl fmt::Display for DatasetUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.package)?;
        if self.revision != Revision::Latest {
            write!(f, "{}", self.revision)?;
        }
        if !self.path.is_empty() {
            write!(f, "/{}", utf8_percent_encode(&self.path, PATH))?;
        }
        let q = &self.query;
        let mut params: Vec<(&str, String)> = Vec::new();
        if !q.columns.is_empty() {
            let names: Vec<_> = q.columns.iter().map(|c| listed_column(c)).collect();
            params.push(("columns", names.join(",")));
        }
        if let Some(v) = &q.filter {
            params.push(("filter", v.clone()));
        }
        if let Some(v) = q.limit {
            params.push(("limit", v.to_string()));
        }
        if let Some(v) = q.sample {
            params.push(("sample", v.to_string()));
        }
        if let Some(v) = q.sample_rows {
            params.push(("sample_rows", v.to_string()));
        }
        if q.seed != 0 {
            params.push(("seed", q.seed.to_string()));
        }
        if let Some(v) = q.partitions {
            params.push(("partitions", v.to_string()));
        }
        if q.compression != Compression::None {
            params.push(("compression", q.compression.as_str().into()));
        }
        if q.content {
            params.push(("content", "true".into()));
        }
        if !q.rows.is_empty() {
            params.push(("rows", super::rows::display(&q.rows)));
        }
        for (i, (k, v)) in params.iter().enumerate() {
            write!(f, "{}{k}={}", if i == 0 { '?' } else { '&' }, utf8_percent_encode(v, VALUE))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        let text = "sheaf://team/data@abcdef12/tables/x.parquet?columns=a,b&filter=a%20%3E%203%20AND%20b%20%3D%20%27x%2By%27&limit=10&sample=0.5&seed=7&partitions=4";
        let u = DatasetUri::parse(text).unwrap();
        assert_eq!(u.package.to_string(), "team/data");
        assert_eq!(u.revision, Revision::Hash("abcdef12".into()));
        assert_eq!(u.path, "tables/x.parquet");
        assert_eq!(u.query.columns, ["a", "b"]);
        assert_eq!(u.query.filter.as_deref(), Some("a > 3 AND b = 'x+y'"));
        assert_eq!(u.query.limit, Some(10));
        assert_eq!(u.query.sample, Some(0.5));
        assert_eq!(u.query.partitions, Some(4));
        assert_eq!(DatasetUri::parse(&u.to_string()).unwrap(), u);
        let r = DatasetUri::parse("t/d/x.parquet?rows=90:100,5,0:3").unwrap();
        assert_eq!(r.query.rows, [(0, 3), (5, 6), (90, 100)]);
        assert_eq!(r.to_string(), "sheaf://t/d/x.parquet?rows=0:3,5,90:100");
    }

    #[test]
    fn rejects_unknown_and_bad_parameters() {
        for bad in [
            "sheaf://t/d/x?rows=",
            "sheaf://t/d/x?rows=5:3",
            "sheaf://t/d/x?rows=a",
            "sheaf://t/d/x?colums=a",
            "sheaf://t/d/x?limit=-1",
            "sheaf://t/d/x?sample=2",
            "sheaf://t/d/x?sample=0.1&sample_rows=3",
            "sheaf://t/d/x?partitions=0",
            "sheaf://t/d/x?limit=1&limit=2",
            "sheaf://t/d/x?compression=gzip",
            "sheaf://t@abc/x",
            "sheaf://nopackage",
        ] {
            let err = DatasetUri::parse(bad).unwrap_err();
            assert!(err.to_string().contains("invalid dataset URI"), "{bad}: {err}");
        }
    }

    #[test]
    fn odd_paths_round_trip() {
        for path in ["odd dir/pct %41.csv", "odd dir/q?mark.parquet", "a@deadbeef/x:v1.csv", "é/😀#1.parquet"] {
            let u = DatasetUri::table(&"t/d".parse().unwrap(), &"a".repeat(64), path);
            let back = DatasetUri::parse(&u.to_string()).unwrap();
            assert_eq!(back.path, path, "{u}");
            let latest = DatasetUri { revision: Revision::Latest, ..u };
            assert_eq!(DatasetUri::parse(&latest.to_string()).unwrap().path, path, "{latest}");
        }
    }

    #[test]
    fn odd_column_names_round_trip() {
        let names = ["a,b", " padded ", "say \"hi\"", "x%2Cy", "plain", "é & =?#+"];
        let mut u = DatasetUri::table(&"t/d".parse().unwrap(), &"a".repeat(64), "x.parquet");
        u.query.columns = names.map(str::to_owned).to_vec();
        let text = u.to_string();
        let listed = r#""a,b"," padded ","say ""hi""",x%2Cy,plain,é & =?#+"#;
        assert!(text.ends_with(&format!("columns={}", utf8_percent_encode(listed, VALUE))), "{text}");
        assert_eq!(DatasetUri::parse(&text).unwrap().query.columns, names, "{text}");
        // Standard encoders percent-encode the list's own commas: still a list.
        let encoded = DatasetUri::parse("t/d/x?columns=a%2C%20b%2C%22c%2Cd%22,,").unwrap();
        assert_eq!(encoded.query.columns, ["a", "b", "c,d"]);
        for bad in [r#"t/d/x?columns="a"#, r#"t/d/x?columns="a"b"#, r#"t/d/x?columns="""#] {
            assert!(DatasetUri::parse(bad).unwrap_err().to_string().contains("columns:"), "{bad}");
        }
        // The typed form takes names exactly and refuses an empty one.
        let mut request = proto::DatasetRequest {
            package: "t/d".into(),
            path: "x.parquet".into(),
            columns: vec![" a".into(), "b,c".into()],
            ..Default::default()
        };
        let from_typed = DatasetUri::from_request(&request).unwrap();
        assert_eq!(from_typed.query.columns, [" a", "b,c"]);
        assert_eq!(DatasetUri::parse(&from_typed.to_string()).unwrap(), from_typed);
        request.columns.push(String::new());
        let err = DatasetUri::from_request(&request).unwrap_err().to_string();
        assert!(err.contains("empty name"), "{err}");
    }

    #[test]
    fn put_targets() {
        let t = PutTarget::parse("sheaf://t/d:v1/out/x.parquet?message=hello%20world").unwrap();
        assert_eq!(t.package.to_string(), "t/d");
        assert_eq!(t.revision, Revision::Tag("v1".into()));
        assert_eq!(t.path, "out/x.parquet");
        assert_eq!(t.message.as_deref(), Some("hello world"));
        assert_eq!(PutTarget::parse("t/d/x.parquet").unwrap().revision, Revision::Latest);
        for bad in ["sheaf://t/d", "sheaf://t/d/x.csv", "sheaf://t/d/x.parquet?limit=3", "sheaf://t/d/../x.parquet"] {
            let err = PutTarget::parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid DoPut URI"), "{bad}: {err}");
        }
    }

    #[test]
    fn manifest_table_has_empty_path() {
        let u = DatasetUri::parse("t/d:v1?content=true").unwrap();
        assert_eq!(u.path, "");
        assert_eq!(u.revision, Revision::Tag("v1".into()));
        assert!(u.query.content);
    }
}
