//! The ordered header list and its values.

use std::fmt;

use bytes::Bytes;

use super::names::HeaderName;
use super::ParseError;

/// A header value: UTF-8 text without CR or LF, stored as [`Bytes`] so that a parsed value
/// is a slice of the received datagram (no copy) and a built one can be a `&'static str`.
///
/// Every constructor replaces CR and LF with a space, so a value can never smuggle an extra
/// header line into a serialized message.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HeaderValue(Bytes);

impl HeaderValue {
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either validates UTF-8 or starts from a `str`/`String`,
        // and the field is private, so the bytes are always valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying bytes (a cheap reference-counted clone).
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// Validates UTF-8 (and rejects CR/LF) without copying.
    pub fn from_utf8(bytes: Bytes) -> Result<HeaderValue, ParseError> {
        std::str::from_utf8(&bytes).map_err(|_| ParseError::ValueNotUtf8)?;
        if memchr::memchr2(b'\r', b'\n', &bytes).is_some() {
            return Err(ParseError::BadHeaderValue("CR or LF in header value"));
        }
        Ok(HeaderValue(bytes))
    }

    /// For the parser: `bytes` is a slice of an already validated header section and lies
    /// within one line.
    pub(crate) fn from_validated(bytes: Bytes) -> HeaderValue {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        debug_assert!(memchr::memchr2(b'\r', b'\n', &bytes).is_none());
        HeaderValue(bytes)
    }

    fn from_string_sanitized(s: String) -> HeaderValue {
        if memchr::memchr2(b'\r', b'\n', s.as_bytes()).is_none() {
            return HeaderValue(Bytes::from(s));
        }
        HeaderValue(Bytes::from(s.replace(['\r', '\n'], " ")))
    }
}

impl From<&'static str> for HeaderValue {
    fn from(s: &'static str) -> Self {
        if memchr::memchr2(b'\r', b'\n', s.as_bytes()).is_none() {
            HeaderValue(Bytes::from_static(s.as_bytes()))
        } else {
            HeaderValue::from_string_sanitized(s.to_string())
        }
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> Self {
        HeaderValue::from_string_sanitized(s)
    }
}

impl From<&String> for HeaderValue {
    fn from(s: &String) -> Self {
        HeaderValue::from_string_sanitized(s.clone())
    }
}

/// Zero-copy when `bytes` is valid UTF-8 without CR/LF; otherwise invalid sequences become
/// U+FFFD and CR/LF become spaces (a `From` cannot fail; use [`HeaderValue::from_utf8`] to
/// reject instead).
impl From<Bytes> for HeaderValue {
    fn from(bytes: Bytes) -> Self {
        match HeaderValue::from_utf8(bytes.clone()) {
            Ok(v) => v,
            Err(_) => HeaderValue::from_string_sanitized(String::from_utf8_lossy(&bytes).into()),
        }
    }
}

impl AsRef<str> for HeaderValue {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The header fields of a message, in the order received (or pushed). Names repeat freely;
/// lookups return the first occurrence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(HeaderName, HeaderValue)>,
}

impl Headers {
    pub fn new() -> Self {
        Headers {
            entries: Vec::new(),
        }
    }

    pub fn with_capacity(n: usize) -> Self {
        Headers {
            entries: Vec::with_capacity(n),
        }
    }

    /// The first occurrence's whole value (trimmed; folded lines joined by one space).
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.get_value(name).map(HeaderValue::as_str)
    }

    /// The first occurrence as a [`HeaderValue`], to copy into another message without
    /// copying the bytes.
    pub fn get_value(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Every value of `name`. For list headers ([`HeaderName::is_list`]) each header line is
    /// split at top-level commas (not inside `"quoted strings"` or `<...>`) and empty
    /// elements are skipped; other headers yield one value per line.
    pub fn get_all<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.clone();
        let split = name.is_list();
        self.entries
            .iter()
            .filter(move |(n, _)| *n == name)
            .flat_map(move |(_, v)| {
                let whole = (!split).then_some(v.as_str());
                let parts = split
                    .then(|| split_list(v.as_str()).filter(|s| !s.is_empty()))
                    .into_iter()
                    .flatten();
                whole.into_iter().chain(parts)
            })
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    pub fn push(&mut self, name: HeaderName, value: impl Into<HeaderValue>) {
        self.entries.push((name, value.into()));
    }

    /// Replaces every occurrence of `name` with one header holding `value`, at the position of
    /// the first occurrence (appended when there was none).
    pub fn set(&mut self, name: HeaderName, value: impl Into<HeaderValue>) {
        let value = value.into();
        match self.entries.iter().position(|(n, _)| *n == name) {
            Some(first) => {
                self.entries[first].1 = value;
                let mut i = 0;
                self.entries.retain(|(n, _)| {
                    let keep = i <= first || *n != name;
                    i += 1;
                    keep
                });
            }
            None => self.entries.push((name, value)),
        }
    }

    pub fn remove(&mut self, name: &HeaderName) {
        self.entries.retain(|(n, _)| n != name);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &str)> {
        self.entries.iter().map(|(n, v)| (n, v.as_str()))
    }

    /// Like [`Headers::iter`], with the values as [`HeaderValue`]s.
    pub fn iter_values(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.entries.iter().map(|(n, v)| (n, v))
    }

    /// The number of header lines (a comma-joined list counts once).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Splits a header value at commas that are outside quoted strings and angle brackets.
/// Elements are trimmed; empty ones are yielded (validation needs to see them).
pub(crate) fn split_list(s: &str) -> SplitList<'_> {
    SplitList { rest: Some(s) }
}

pub(crate) struct SplitList<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for SplitList<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let bytes = s.as_bytes();
        let (mut in_quote, mut in_angle, mut escaped) = (false, false, false);
        for (i, &b) in bytes.iter().enumerate() {
            if in_quote {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_quote = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_quote = true,
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(trim_lws(&s[..i]));
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(trim_lws(s))
    }
}

/// Trims spaces and tabs (the only whitespace left in a header value after unfolding).
pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}
