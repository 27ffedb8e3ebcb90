//! Names: delegation path matching (TUF 1.0.34 §5.6.7.2 / python-tuf
//! `DelegatedRole.is_delegated_path`), file names and URLs.

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

use crate::model::{DelegatedRole, PathRule, SuccinctRoles};

/// Python `urllib.parse.quote(s, safe="")`: everything but `A-Za-z0-9_.-~` is encoded.
const QUOTE_ALL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Characters that cannot stand for themselves in a URL path; `/` is kept.
const URL_PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// A role or target name as one file name or URL segment (python-tuf quotes role names
/// in metadata URLs and file names, and target paths in target file names).
pub fn encode_name(name: &str) -> String {
    utf8_percent_encode(name, QUOTE_ALL).to_string()
}

/// A target path as the path part of its URL: each segment keeps its text, `/` separates.
pub(crate) fn encode_url_path(path: &str) -> String {
    utf8_percent_encode(path, URL_PATH).to_string()
}

/// Whether `role` is trusted for `target` (TUF 1.0.34 §5.6.7.2 and python-tuf
/// `DelegatedRole.is_delegated_path`).
pub(crate) fn role_matches(role: &DelegatedRole, target: &str) -> bool {
    match &role.paths {
        PathRule::HashPrefixes(prefixes) => {
            let digest = hex::encode(Sha256::digest(target.as_bytes()));
            prefixes.iter().any(|p| digest.starts_with(p.as_str()))
        }
        PathRule::Paths(patterns) => patterns.iter().any(|p| path_matches(p, target)),
    }
}

/// A pattern matches when it has as many `/`-separated segments as the target and each
/// segment matches with Python `fnmatch` (so `*` never crosses a `/`).
pub fn path_matches(pattern: &str, target: &str) -> bool {
    let pattern_parts: Vec<&str> = pattern.split('/').collect();
    let target_parts: Vec<&str> = target.split('/').collect();
    pattern_parts.len() == target_parts.len()
        && pattern_parts
            .iter()
            .zip(&target_parts)
            .all(|(p, t)| fnmatch(p, t))
}

/// Python `fnmatch.fnmatchcase` (POSIX `fnmatch` is case-sensitive): `*` any run of
/// characters, `?` one character, `[seq]`/`[!seq]` classes with ranges, a `]` first in a
/// class is literal, an unclosed `[` is literal, and backslash is an ordinary character.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with single-star backtracking: O(len(p) * len(n)).
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match class(&p, pi) {
                Some((end, matches)) => n.get(ni).filter(|c| matches(**c)).map(|_| end),
                None => (n.get(ni) == Some(&'[')).then_some(pi + 1),
            },
            Some(c) => (n.get(ni) == Some(c)).then_some(pi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match backtrack {
                Some((star, at)) => {
                    pi = star + 1;
                    ni = at + 1;
                    backtrack = Some((star, at + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

/// The character class starting at `p[start] == '['`: the index after its `]` and a
/// membership test, or `None` when it is not closed (then `[` is a literal).
#[allow(clippy::type_complexity)]
fn class(p: &[char], start: usize) -> Option<(usize, Box<dyn Fn(char) -> bool>)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&'!');
    if negate {
        i += 1;
    }
    let body_start = i;
    // A `]` right after `[` or `[!` belongs to the class.
    if p.get(i) == Some(&']') {
        i += 1;
    }
    while p.get(i).is_some_and(|c| *c != ']') {
        i += 1;
    }
    p.get(i)?;
    let body: Vec<char> = p.get(body_start..i)?.to_vec();
    let mut ranges: Vec<(char, char)> = Vec::new();
    let mut j = 0;
    while let Some(&c) = body.get(j) {
        match (body.get(j + 1), body.get(j + 2)) {
            (Some('-'), Some(&hi)) => {
                ranges.push((c, hi));
                j += 3;
            }
            _ => {
                ranges.push((c, c));
                j += 1;
            }
        }
    }
    let matches = move |c: char| ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != negate;
    Some((i + 1, Box::new(matches)))
}

/// TAP 15 `SuccinctRoles.get_role_for_target`: the bin named by the first `bit_length`
/// bits of sha256(target).
pub(crate) fn succinct_role_for(s: &SuccinctRoles, target: &str) -> String {
    let digest = Sha256::digest(target.as_bytes());
    let mut first = [0u8; 4];
    first.copy_from_slice(&digest[..4]);
    let bin = u32::from_be_bytes(first) >> (32 - s.bit_length);
    format!("{}-{}", s.name_prefix, succinct_suffix(s, bin))
}

/// Whether `name` is one of the bins of `s` (`SuccinctRoles.is_delegated_role`).
pub(crate) fn succinct_has_role(s: &SuccinctRoles, name: &str) -> bool {
    let Some(suffix) = name
        .strip_prefix(s.name_prefix.as_str())
        .and_then(|rest| rest.strip_prefix('-'))
    else {
        return false;
    };
    let width = s.bit_length.div_ceil(4) as usize;
    suffix.len() == width
        && suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && u64::from_str_radix(suffix, 16).is_ok_and(|bin| bin < (1u64 << s.bit_length))
}

fn succinct_suffix(s: &SuccinctRoles, bin: u32) -> String {
    let width = s.bit_length.div_ceil(4) as usize;
    format!("{bin:0width$x}")
}
