//! The `Digest k=v, k="v", ...` syntax shared by challenges and credentials (RFC 7616 §3.3,
//! RFC 3261 §25.1 for quoted-string and LWS).

use std::borrow::Cow;

use super::AuthError;

/// Far above anything real (Twilio's credentials are ~400 bytes) and small enough that parsing
/// a hostile header costs nothing.
pub(super) const MAX_HEADER_LEN: usize = 8 * 1024;
/// RFC 7616 defines 14 parameters; the margin admits extensions without admitting a flood.
const MAX_PARAMS: usize = 32;

/// The parameters of one `Digest` header value, names as sent, values unquoted and unescaped.
#[derive(Debug)]
pub(super) struct DigestParams<'a> {
    items: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> DigestParams<'a> {
    /// The value of `name` (case-insensitive), if present.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// The value of a parameter the caller cannot do without.
    pub(super) fn require(&self, name: &str) -> Result<&str, AuthError> {
        self.get(name)
            .ok_or_else(|| AuthError::Malformed(format!("missing {name}")))
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 `token` characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~#$&^|".contains(&b)
}

fn malformed(reason: impl Into<String>) -> AuthError {
    AuthError::Malformed(reason.into())
}

/// Parses `Digest` followed by comma-separated `name=value` pairs. The scheme is matched
/// case-insensitively; whitespace (including folded line breaks) may appear around every
/// token; empty list elements (`a=1,,b=2`) are skipped as RFC 7230 §7 allows. Values are tokens
/// or quoted-strings, whose backslash escapes are removed. A repeated parameter is an error: a
/// header naming two realms or two responses has no single meaning, and picking one would let a
/// proxy and this server disagree on what was authenticated.
pub(super) fn parse(value: &str) -> Result<DigestParams<'_>, AuthError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(malformed("header too long"));
    }
    let b = value.as_bytes();
    let mut i = skip_ws(b, 0);
    let scheme_start = i;
    while i < b.len() && is_token(b[i]) {
        i += 1;
    }
    let scheme = &value[scheme_start..i];
    if scheme.is_empty() {
        return Err(malformed("no authentication scheme"));
    }
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(malformed(format!("scheme {scheme:?} is not Digest")));
    }
    if i < b.len() && !is_ws(b[i]) {
        return Err(malformed("no space after the scheme"));
    }

    let mut items: Vec<(&str, Cow<'_, str>)> = Vec::new();
    loop {
        while i < b.len() && (is_ws(b[i]) || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let name_start = i;
        while i < b.len() && is_token(b[i]) {
            i += 1;
        }
        let name = &value[name_start..i];
        if name.is_empty() {
            return Err(malformed(format!("expected a parameter name at byte {i}")));
        }
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'=') {
            return Err(malformed(format!("parameter {name:?} has no '='")));
        }
        i = skip_ws(b, i + 1);
        let val;
        if b.get(i) == Some(&b'"') {
            let (v, next) = quoted(value, i + 1)
                .ok_or_else(|| malformed(format!("unterminated quoted value for {name:?}")))?;
            val = v;
            i = next;
        } else {
            let start = i;
            while i < b.len() && !is_ws(b[i]) && b[i] != b',' && b[i] != b'"' {
                i += 1;
            }
            if start == i {
                return Err(malformed(format!("empty value for {name:?}")));
            }
            val = Cow::Borrowed(&value[start..i]);
        }
        i = skip_ws(b, i);
        if i < b.len() && b[i] != b',' {
            return Err(malformed(format!("expected ',' after {name:?}")));
        }
        if items.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(malformed(format!("duplicate parameter {name:?}")));
        }
        if items.len() == MAX_PARAMS {
            return Err(malformed("too many parameters"));
        }
        items.push((name, val));
    }
    if items.is_empty() {
        return Err(malformed("no parameters"));
    }
    Ok(DigestParams { items })
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// The body of a quoted-string starting at `start` (just after the opening quote): the
/// unescaped value and the index just past the closing quote. Borrows when nothing was
/// escaped. `None` when the closing quote is missing.
fn quoted(value: &str, start: usize) -> Option<(Cow<'_, str>, usize)> {
    let b = value.as_bytes();
    let mut i = start;
    let mut owned: Option<Vec<u8>> = None;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let v = match owned {
                    None => Cow::Borrowed(&value[start..i]),
                    // Only ASCII backslashes were removed, so the bytes are still UTF-8.
                    Some(bytes) => Cow::Owned(String::from_utf8(bytes).ok()?),
                };
                return Some((v, i + 1));
            }
            b'\\' => {
                let buf = owned.get_or_insert_with(|| b[start..i].to_vec());
                let escaped = *b.get(i + 1)?;
                buf.push(escaped);
                i += 2;
            }
            c => {
                if let Some(buf) = owned.as_mut() {
                    buf.push(c);
                }
                i += 1;
            }
        }
    }
    None
}

/// Writes `s` as a quoted-string, escaping `"` and `\`.
pub(super) fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Decodes an RFC 8187 ext-value (`UTF-8'lang'pct-encoded`), the form of RFC 7616's
/// `username*`. Only UTF-8 is accepted, as RFC 8187 §3.2.1 requires of recipients.
pub(super) fn decode_ext_value(s: &str) -> Option<String> {
    let (charset, rest) = s.split_once('\'')?;
    let (_lang, encoded) = rest.split_once('\'')?;
    if !charset.eq_ignore_ascii_case("UTF-8") {
        return None;
    }
    let b = encoded.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex_val(*b.get(i + 1)?)?;
            let lo = hex_val(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}
