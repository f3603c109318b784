//! The ordered header list and its values.

use std::fmt;

use bytes::Bytes;

use super::names::HeaderName;
use super::ParseError;

/// A header value: UTF-8 text without CR or LF, stored as [`Bytes`] so that a value taken
/// from a parsed message ([`Headers::get_value`]) is a slice of the received datagram (no
/// copy) and a built one can be a `&'static str`.
///
/// Every constructor except [`HeaderValue::from_utf8`] (which rejects them) replaces CR and
/// LF with a space, so a value can never smuggle an extra header line into a serialized
/// message.
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
///
/// A parsed message's values are ranges of the datagram, which the list holds once: slicing
/// a `Bytes` per value would cost an atomic increment and decrement per header, a measurable
/// share of the parse. [`Headers::get_value`] hands out a `Bytes`-backed [`HeaderValue`] when
/// a value is copied into another message, still without copying the text.
#[derive(Clone, Default)]
pub struct Headers {
    /// The datagram the parsed values point into (empty for a built message).
    src: Bytes,
    // Names and values live in parallel vectors: pushing a (name, value) tuple makes the
    // compiler assemble it on the stack and copy it with vector loads that stall on store
    // forwarding, once per header.
    names: Vec<HeaderName>,
    values: Vec<Value>,
}

#[derive(Clone)]
enum Value {
    /// `src[start..end]`, validated as UTF-8 without CR/LF by the parser; packed as
    /// `start | end << 32` so that the entry is written with whole-word stores (two `u32`
    /// stores read back by one vector load stall store forwarding on every push).
    Src(u64),
    Own(HeaderValue),
}

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Headers {
            src: Bytes::new(),
            names: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
        }
    }

    /// For the parser: `src` is the datagram, whose header section it has validated.
    pub(crate) fn with_source(src: Bytes, n: usize) -> Self {
        Headers {
            src,
            names: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
        }
    }

    /// For the parser: `src[start..end]` is valid UTF-8 and holds no CR or LF.
    pub(crate) fn push_src(&mut self, name: HeaderName, start: usize, end: usize) {
        debug_assert!(std::str::from_utf8(&self.src[start..end]).is_ok());
        // The parser rejects datagrams over 64 KiB, so offsets fit in u32.
        let packed = start as u64 | (end as u64) << 32;
        self.names.push(name);
        self.values.push(Value::Src(packed));
    }

    fn entries(&self) -> impl Iterator<Item = (&HeaderName, &Value)> {
        self.names.iter().zip(&self.values)
    }

    fn text<'a>(&'a self, v: &'a Value) -> &'a str {
        match v {
            Value::Src(packed) => match self.src.get(unpack(*packed)) {
                // SAFETY: `Src` ranges are only created by `push_src`, whose caller (the
                // parser) validated them as UTF-8; `src` is never replaced once set.
                Some(b) => unsafe { std::str::from_utf8_unchecked(b) },
                None => "",
            },
            Value::Own(h) => h.as_str(),
        }
    }

    fn owned(&self, v: &Value) -> HeaderValue {
        match v {
            Value::Src(packed) => {
                let range = unpack(*packed);
                if range.end <= self.src.len() && range.start <= range.end {
                    HeaderValue::from_validated(self.src.slice(range))
                } else {
                    HeaderValue::from("")
                }
            }
            Value::Own(h) => h.clone(),
        }
    }

    /// The first occurrence's whole value (trimmed; folded lines joined by one space).
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.entries()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| self.text(v))
    }

    /// The first occurrence as a [`HeaderValue`] sharing this message's bytes, to put into
    /// another message without copying.
    pub fn get_value(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.entries()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| self.owned(v))
    }

    /// Every header line named `name`, unsplit, as [`HeaderValue`]s sharing this message's
    /// bytes.
    pub fn get_all_values<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = HeaderValue> + 'a {
        let name = name.clone();
        self.entries()
            .filter(move |(n, _)| **n == name)
            .map(|(_, v)| self.owned(v))
    }

    /// Every value of `name`. For list headers ([`HeaderName::is_list`]) each header line is
    /// split at top-level commas (not inside `"quoted strings"` or `<...>`) and empty
    /// elements are skipped; other headers yield one value per line.
    pub fn get_all<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.clone();
        let split = name.is_list();
        self.entries()
            .filter(move |(n, _)| **n == name)
            .flat_map(move |(_, v)| {
                let v = self.text(v);
                let whole = (!split).then_some(v);
                let parts = split
                    .then(|| split_list(v).filter(|s| !s.is_empty()))
                    .into_iter()
                    .flatten();
                whole.into_iter().chain(parts)
            })
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        self.names.iter().any(|n| n == name)
    }

    pub fn push(&mut self, name: HeaderName, value: impl Into<HeaderValue>) {
        self.names.push(name);
        self.values.push(Value::Own(value.into()));
    }

    /// Replaces every occurrence of `name` with one header holding `value`, at the position of
    /// the first occurrence (appended when there was none).
    pub fn set(&mut self, name: HeaderName, value: impl Into<HeaderValue>) {
        let value = Value::Own(value.into());
        match self.names.iter().position(|n| *n == name) {
            Some(first) => {
                let keep: Vec<bool> = (self.names.iter().enumerate())
                    .map(|(i, n)| i <= first || *n != name)
                    .collect();
                self.retain_where(&keep);
                if let Some(slot) = self.values.get_mut(first) {
                    *slot = value;
                }
            }
            None => {
                self.names.push(name);
                self.values.push(value);
            }
        }
    }

    pub fn remove(&mut self, name: &HeaderName) {
        let keep: Vec<bool> = self.names.iter().map(|n| n != name).collect();
        self.retain_where(&keep);
    }

    fn retain_where(&mut self, keep: &[bool]) {
        let mut i = 0;
        self.names.retain(|_| {
            i += 1;
            keep.get(i - 1).copied().unwrap_or(true)
        });
        let mut i = 0;
        self.values.retain(|_| {
            i += 1;
            keep.get(i - 1).copied().unwrap_or(true)
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &str)> {
        self.entries().map(|(n, v)| (n, self.text(v)))
    }

    /// Like [`Headers::iter`], with each value as a [`HeaderValue`] sharing this message's
    /// bytes.
    pub fn iter_values(&self) -> impl Iterator<Item = (&HeaderName, HeaderValue)> + '_ {
        self.entries().map(|(n, v)| (n, self.owned(v)))
    }

    /// The number of header lines (a comma-joined list counts once).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

fn unpack(packed: u64) -> std::ops::Range<usize> {
    (packed as u32 as usize)..((packed >> 32) as usize)
}

/// Equal when the same names carry the same text in the same order, wherever the bytes live.
impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
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
        // Most values hold a single element: one vectorised search settles it.
        if memchr::memchr(b',', bytes).is_none() {
            self.rest = None;
            return Some(trim_lws(s));
        }
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
/// Byte-wise: `str::trim_matches` with a char pattern decodes UTF-8 and is measurably slower
/// on the parse path.
#[inline]
pub(crate) fn trim_lws(s: &str) -> &str {
    trim_end_lws(trim_start_lws(s))
}

#[inline]
pub(crate) fn trim_start_lws(s: &str) -> &str {
    let n = s.bytes().take_while(|&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

#[inline]
pub(crate) fn trim_end_lws(s: &str) -> &str {
    let n = s
        .bytes()
        .rev()
        .take_while(|&b| b == b' ' || b == b'\t')
        .count();
    &s[..s.len() - n]
}

/// The index of the first `b` in `s` (vectorised).
#[inline]
pub(crate) fn find_byte(s: &str, b: u8) -> Option<usize> {
    memchr::memchr(b, s.as_bytes())
}

/// `str::split_once` for an ASCII delimiter, without the char-pattern machinery.
#[inline]
pub(crate) fn split_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    find_byte(s, b).map(|i| (&s[..i], &s[i + 1..]))
}
