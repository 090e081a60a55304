//! `sheaf browse`: a revision's entries, or those under a folder.

use super::args::BrowseArgs;
use super::exit::codes;
use super::text::shown;
use serde_json::Value;
use sheaf::manifest::{Entry, json};
use sheaf::{Error, Registry, Result};
use std::io::{BufWriter, Seek, SeekFrom, Write};

/// The entry's metadata as compact JSON, its numbers as written in the
/// manifest's `line` when a serde_json value would round them (integers
/// beyond 64 bits).
fn meta_json(e: &Entry, line: &str) -> String {
    exact_member(line, "meta").unwrap_or_else(|| e.meta.to_string())
}

/// Member `key` of the JSON object `line` as compact JSON with its numbers
/// as written, when it has numbers a serde_json value would not keep exactly.
fn exact_member(line: &str, key: &str) -> Option<String> {
    if !json::has_inexact_numbers(line) {
        return None;
    }
    json::parse_exact(line).ok()?.get(key).map(json::encode_exact_compact)
}

/// An entry's line of text: size, hash, key and metadata (when it has any).
fn text_line(e: &Entry, line: &str) -> String {
    let meta = match &e.meta {
        Value::Object(m) if m.is_empty() => String::new(),
        Value::Null => String::new(),
        _ => format!("  {}", meta_json(e, line)),
    };
    format!("{:>12}  {}  {}{}", e.size, e.hash, shown(&e.logical_key), meta)
}

/// An entry as one JSON object: key, size, hash, metadata, physical keys
/// (the manifest's fields `browse` does not interpret are left out).
fn json_entry(e: &Entry, line: &str) -> String {
    format!(
        "{{\"logical_key\":{},\"size\":{},\"hash\":{},\"meta\":{},\"physical_keys\":{}}}",
        Value::from(e.logical_key.as_str()),
        e.size,
        serde_json::to_string(&e.hash).expect("a hash serializes"),
        meta_json(e, line),
        Value::from(e.physical_keys.clone()),
    )
}

/// Prints the entries `args` selects: a line of text each, or (with
/// `json`) one JSON object `{top_hash, message, user_meta, entries}`.
///
/// Memory does not grow with the package: entries are formatted as the
/// manifest streams by, into an anonymous temporary file, which is printed
/// only once the whole manifest matched its top hash (nothing is shown of
/// a manifest that turns out not to match).
pub async fn run(registry: &Registry, args: &BrowseArgs, json: bool) -> Result<u8> {
    let (r, prefix) = args.target()?;
    let top_hash = registry.resolve(&r.package, &r.revision).await?;
    let spool_err = |e| Error::io("browse's temporary file", e);
    let mut spool = BufWriter::with_capacity(1 << 20, tempfile::tempfile().map_err(spool_err)?);
    let mut count = 0usize;
    let (header, header_line) = registry
        .scan_under_lines(&top_hash, &prefix, |e, line| {
            let (separator, shown) = match json {
                true => (if count == 0 { "" } else { "," }, json_entry(&e, line)),
                false => ("\n", text_line(&e, line)),
            };
            spool
                .write_all(separator.as_bytes())
                .and_then(|()| spool.write_all(shown.as_bytes()))
                .map_err(spool_err)?;
            count += 1;
            Ok(())
        })
        .await?;
    if count == 0 && !prefix.is_empty() {
        return Err(Error::path_not_found(&prefix, &r.package, &top_hash));
    }
    let mut spool = spool.into_inner().map_err(|e| spool_err(e.into_error()))?;
    spool.seek(SeekFrom::Start(0)).map_err(spool_err)?;
    let message = header.get("message").and_then(Value::as_str);
    let user_meta =
        header.get("user_meta").map(|m| exact_member(&header_line, "user_meta").unwrap_or_else(|| m.to_string()));
    let head = if json {
        format!(
            "{{\"top_hash\":{},\"message\":{},\"user_meta\":{},\"entries\":[",
            Value::from(top_hash.as_str()),
            message.map_or(Value::Null, Value::from),
            user_meta.as_deref().unwrap_or("null"),
        )
    } else {
        let mut head = format!("{} {}", r.package, top_hash);
        if let Some(m) = message {
            head.push_str(&format!("\nmessage: {}", shown(m)));
        }
        if let Some(m) = user_meta {
            head.push_str(&format!("\nmeta: {m}"));
        }
        head
    };
    let mut out = std::io::stdout().lock();
    let printed = out
        .write_all(head.as_bytes())
        .and_then(|()| std::io::copy(&mut spool, &mut out))
        .and_then(|_| out.write_all(if json { b"]}\n" } else { b"\n" }))
        .and_then(|()| out.flush());
    match printed {
        // A closed stdout (`sheaf browse x | head -1`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::io("stdout", e)),
        _ => Ok(codes::OK),
    }
}
