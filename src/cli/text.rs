//! Small pieces of the text output, shared by the commands' reports.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

/// `s` fit for a line of text output: control characters (a newline in a
/// file name or a message, an escape sequence a terminal would obey) are
/// written as escapes (`\n`, `\u{1b}`), so one entry is always one line.
pub fn shown(s: &str) -> Cow<'_, str> {
    match s.chars().any(char::is_control) {
        false => Cow::Borrowed(s),
        true => Cow::Owned(
            s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.into() }).collect(),
        ),
    }
}

/// The first 12 characters of a hash, as people quote it.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Unix seconds as an RFC 3339 UTC time.
pub fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Bytes as "1.50 MiB".
pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// "1 file", "2 files".
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Writes `lines` separated by newlines, with none after the last: [`super::emit`]
/// ends the text, and an empty report prints nothing at all.
pub fn write_lines<I>(f: &mut fmt::Formatter<'_>, lines: I) -> fmt::Result
where
    I: IntoIterator,
    I::Item: fmt::Display,
{
    for (i, line) in lines.into_iter().enumerate() {
        if i > 0 {
            f.write_str("\n")?;
        }
        write!(f, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lines(Vec<&'static str>);

    impl fmt::Display for Lines {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_lines(f, &self.0)
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(shown("a/b c.txt"), Cow::Borrowed("a/b c.txt")));
        assert_eq!(shown("x\nfake line\r\u{1b}[31m\u{85}"), "x\\nfake line\\r\\u{1b}[31m\\u{85}");
    }

    #[test]
    fn lines_have_no_trailing_newline() {
        assert_eq!(Lines(vec![]).to_string(), "");
        assert_eq!(Lines(vec!["a"]).to_string(), "a");
        assert_eq!(Lines(vec!["a", "", "b"]).to_string(), "a\n\nb");
    }

    #[test]
    fn small_pieces() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
        assert_eq!(plural(1, "file"), "1 file");
        assert_eq!(plural(0, "file"), "0 files");
        assert_eq!(when(0), "1970-01-01T00:00:00Z");
    }
}
