//! `.quiltignore`: the files `push` leaves out of a folder, decided exactly
//! as quilt3's `Package.set_dir` decides them, so that a folder gets the same
//! top hash from both.
//!
//! quilt3 reads `.quiltignore` at the top of the folder only. Each non-empty
//! line is a pattern in the shell style of Python's `fnmatch` (`*` and `?`
//! match any characters, `/` included; `[abc]`, `[a-z]`, `[!abc]`), prefixed
//! with `*/` and matched, case-sensitively, against the *absolute* path of
//! each file and folder (the folder's real path, symbolic links resolved). A
//! file is left out if its path matches a pattern, or if a folder holding it
//! (below the top) does, written with or without a trailing `/`. Nothing
//! else is special: no comments, no `!` negation, no trimming of spaces
//! (the file itself is pushed unless a pattern names it).

use super::{Error, Result};
use std::path::Path;

/// The file naming what to leave out.
pub const FILE_NAME: &str = ".quiltignore";

/// The patterns of a folder's `.quiltignore`.
#[derive(Debug)]
pub struct QuiltIgnore {
    /// The folder's absolute real path, as quilt3 matches it.
    root: String,
    patterns: Vec<Pattern>,
}

impl QuiltIgnore {
    /// The patterns of `dir/.quiltignore`, or `None` if it has none.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let file = dir.join(FILE_NAME);
        let text = match std::fs::read(&file) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
                Error::invalid(format!("{}: not UTF-8 text (quilt3 reads it as UTF-8)", file.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(file.display().to_string(), e)),
        };
        let root = std::fs::canonicalize(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
        let root = root
            .to_str()
            .ok_or_else(|| Error::invalid(format!("{}: the folder's path must be UTF-8", root.display())))?
            .to_owned();
        let patterns = text.split('\n').filter(|line| !line.is_empty()).map(|line| Pattern::new(&format!("*/{line}")));
        Ok(Some(QuiltIgnore { root, patterns: patterns.collect() }))
    }

    /// Whether the folder at `key` (relative, `/`-separated) and all it
    /// holds are left out.
    pub fn ignores_folder(&self, key: &str) -> bool {
        let path = format!("{}/{key}", self.root);
        let slashed = format!("{path}/");
        self.patterns.iter().any(|p| p.matches(&slashed) || p.matches(&path))
    }

    /// Whether the file at `key` is left out (its folders aside).
    pub fn ignores_file(&self, key: &str) -> bool {
        let path = format!("{}/{key}", self.root);
        self.patterns.iter().any(|p| p.matches(&path))
    }
}

/// One pattern, as Python's `fnmatch.translate` reads it.
#[derive(Debug)]
struct Pattern(Vec<Token>);

#[derive(Debug)]
enum Token {
    /// Any run of characters (consecutive `*` are one).
    Any,
    /// Any one character.
    One,
    /// One character of a set (`[...]`), or not of it (`[!...]`).
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Literal(char),
}

impl Pattern {
    fn new(text: &str) -> Self {
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if matches!(tokens.last(), Some(Token::Any)) => {}
                '*' => tokens.push(Token::Any),
                '?' => tokens.push(Token::One),
                '[' => match set(&chars, i) {
                    Some((token, next)) => {
                        tokens.push(token);
                        i = next;
                    }
                    // No closing `]`: a literal `[`.
                    None => tokens.push(Token::Literal('[')),
                },
                c => tokens.push(Token::Literal(c)),
            }
        }
        Pattern(tokens)
    }

    /// Whether the whole of `text` matches (a `*` backtracks to the last
    /// one seen: linear but for the characters retried after it).
    fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let tokens = &self.0;
        let (mut t, mut p) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            if p < tokens.len() {
                let one = match &tokens[p] {
                    Token::Any => {
                        star = Some((p, t));
                        p += 1;
                        continue;
                    }
                    Token::One => true,
                    Token::Literal(c) => *c == text[t],
                    Token::Set { negated, ranges } => {
                        ranges.iter().any(|&(lo, hi)| lo <= text[t] && text[t] <= hi) != *negated
                    }
                };
                if one {
                    p += 1;
                    t += 1;
                    continue;
                }
            }
            match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            }
        }
        tokens[p..].iter().all(|token| matches!(token, Token::Any))
    }
}

/// The set starting after a `[` at `start`, and where the pattern goes on;
/// `None` if no `]` closes it. As Python reads it: a `!` first negates, a
/// `]` first (after any `!`) is a member, `a-z` is a range (one whose ends
/// are reversed matches nothing), and a `-` first or last is a member.
fn set(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut j = start;
    if chars.get(j) == Some(&'!') {
        j += 1;
    }
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    while j < chars.len() && chars[j] != ']' {
        j += 1;
    }
    if j >= chars.len() {
        return None;
    }
    let mut body = &chars[start..j];
    let negated = body.first() == Some(&'!');
    if negated {
        body = &body[1..];
    }
    let mut ranges = Vec::new();
    let mut k = 0;
    while k < body.len() {
        if k + 2 < body.len() && body[k + 1] == '-' {
            ranges.push((body[k], body[k + 2]));
            k += 3;
        } else {
            ranges.push((body[k], body[k]));
            k += 1;
        }
    }
    Some((Token::Set { negated, ranges }, j + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_fnmatch() {
        // (pattern, text, what Python's fnmatch.fnmatchcase says)
        let cases = [
            ("*.log", "a.log", true),
            ("*.log", "dir/a.log", true),
            ("*.log", "a.log.txt", false),
            ("*/data/", "/r/x/data/", true),
            ("*/data", "/r/x/data/y", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", true),
            ("a?c", "ac", false),
            ("[abc]x", "bx", true),
            ("[!abc]x", "bx", false),
            ("[!abc]x", "dx", true),
            ("[a-c]", "b", true),
            ("[a-c]", "d", false),
            ("[c-a]", "b", false),
            ("[]]", "]", true),
            ("[!]]", "a", true),
            ("[!]", "[!]", true),
            ("[!]", "x", false),
            ("[-a]", "-", true),
            ("[a-]", "-", true),
            ("[abc", "[abc", true),
            ("**x", "abx", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("*a*b*c", "xaxbxbxc", true),
            ("*a*b*c", "xaxbxbx", false),
            ("A*", "a", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(Pattern::new(pattern).matches(text), expected, "{pattern:?} on {text:?}");
        }
    }

    #[test]
    fn folders_and_files_are_left_out_as_quilt3_does() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "*.log\nbuild/\ncache\n\n").unwrap();
        let ignore = QuiltIgnore::load(dir.path()).unwrap().unwrap();
        assert!(ignore.ignores_file("a.log") && ignore.ignores_file("x/y/a.log"));
        assert!(!ignore.ignores_file("a.txt") && !ignore.ignores_file(FILE_NAME));
        assert!(ignore.ignores_folder("build") && ignore.ignores_folder("x/build"));
        // `build/` names folders only; `cache` both files and folders.
        assert!(!ignore.ignores_file("build"));
        assert!(ignore.ignores_file("cache") && ignore.ignores_folder("cache"));
        assert!(!ignore.ignores_folder("builds"));
        let none = tempfile::tempdir().unwrap();
        assert!(QuiltIgnore::load(none.path()).unwrap().is_none());
    }
}
