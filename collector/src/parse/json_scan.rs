//! The fast path for the application's JSON lines: one strict pass over the object that
//! collects the wanted keys' values, without serde.
//!
//! It answers only when it is sure: the line must be a JSON object that serde accepts, in
//! a subset that covers ordinary log lines (no control bytes, no escapes in keys, no `\u`
//! escapes in wanted values, wanted values that are strings, plain unsigned integers,
//! booleans or null, at most [`MAX_PAIRS`] wanted keys, nesting at most [`MAX_DEPTH`]).
//! Anything else returns `None` and serde reads the line as before, so a malformed line
//! still yields what serde's visitor found before the error.

use std::borrow::Cow;

/// Most wanted keys collected from one line.
pub const MAX_PAIRS: usize = 8;
/// Deepest nesting of skipped values.
pub const MAX_DEPTH: u32 = 32;

/// The wanted `(key, value)` pairs of one object, in order; keys ASCII-lower-cased, values
/// as serde's scalar rendering gives them (strings unescaped, `null` empty).
#[derive(Default)]
pub struct Pairs<'a> {
    items: [(Cow<'a, str>, Cow<'a, str>); MAX_PAIRS],
    len: usize,
}

impl<'a> Pairs<'a> {
    /// The pairs, in the line's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.items[..self.len].iter().map(|(k, v)| (&**k, &**v))
    }
}

struct Cur<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += hit as usize;
        hit
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let hit = self.b[self.i..].starts_with(word);
        self.i += word.len();
        hit.then_some(())
    }

    /// After an opening quote: the raw content's range and whether it holds escapes; `\u`
    /// escapes only when `u` (serde checks them only where it decodes).
    fn string(&mut self, u: bool) -> Option<(usize, usize, bool)> {
        let start = self.i;
        let mut escaped = false;
        loop {
            let k = super::frame::find_quote_or_backslash(self.b, self.i)?;
            if self.b[k] == b'"' {
                self.i = k + 1;
                return Some((start, k, escaped));
            }
            escaped = true;
            match *self.b.get(k + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i = k + 2,
                b'u' if u && self.b.get(k + 2..k + 6)?.iter().all(u8::is_ascii_hexdigit) => {
                    self.i = k + 6
                }
                _ => return None,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// A JSON number (RFC 8259 grammar, as serde checks it).
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.') && self.digits() == 0 {
            return None;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// Skips one value.
    fn skip(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.string(true)?;
            }
            b'{' => {
                self.i += 1;
                self.ws();
                if self.eat(b'}') {
                    return Some(());
                }
                loop {
                    if depth == 0 || !self.eat(b'"') {
                        return None;
                    }
                    self.string(true)?;
                    self.ws();
                    if !self.eat(b':') {
                        return None;
                    }
                    self.ws();
                    self.skip(depth - 1)?;
                    self.ws();
                    if self.eat(b'}') {
                        return Some(());
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                    self.ws();
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.eat(b']') {
                    return Some(());
                }
                loop {
                    if depth == 0 {
                        return None;
                    }
                    self.skip(depth - 1)?;
                    self.ws();
                    if self.eat(b']') {
                        return Some(());
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                    self.ws();
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return None,
        }
        Some(())
    }

    /// A wanted value, rendered as serde's scalar visitor renders it.
    fn scalar(&mut self) -> Option<Cow<'a, str>> {
        let s = self.s;
        Some(match self.peek()? {
            b'"' => {
                self.i += 1;
                let (a, e, escaped) = self.string(false)?;
                if escaped {
                    Cow::Owned(unescape(&s[a..e]))
                } else {
                    Cow::Borrowed(&s[a..e])
                }
            }
            b'0'..=b'9' => {
                // Unsigned integers that fit u64 print as written; others go to serde.
                let a = self.i;
                if self.b[a] == b'0' {
                    self.i += 1;
                } else {
                    self.digits();
                }
                if self.i - a > 18 || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
                    return None;
                }
                Cow::Borrowed(&s[a..self.i])
            }
            b't' => {
                self.literal(b"true")?;
                Cow::Borrowed("true")
            }
            b'f' => {
                self.literal(b"false")?;
                Cow::Borrowed("false")
            }
            b'n' => {
                self.literal(b"null")?;
                Cow::Borrowed("")
            }
            _ => return None,
        })
    }
}

/// Content with only the simple escapes (`string(false)` checked them).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match it.next() {
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some(c) => c, // `"`, `\` and `/` stand for themselves
            None => break,
        });
    }
    out
}

/// Scans the object `line` starts with (`{`); `wanted` is asked about each lower-cased key.
/// What follows the object is not looked at (serde's visitor does not either).
pub fn scan<'a>(line: &'a str, wanted: impl Fn(&str) -> bool) -> Option<Pairs<'a>> {
    let b = line.as_bytes();
    // Control bytes: errors in strings; outside them only serde's whitespace would do.
    if super::frame::has_control(b) {
        return None;
    }
    let mut cur = Cur { s: line, b, i: 0 };
    let mut pairs = Pairs::default();
    if !cur.eat(b'{') {
        return None;
    }
    cur.ws();
    if cur.eat(b'}') {
        return Some(pairs);
    }
    loop {
        if !cur.eat(b'"') {
            return None;
        }
        let (a, e, escaped) = cur.string(false)?;
        if escaped {
            return None;
        }
        let key = &line[a..e];
        let key = if key.bytes().any(|c| c.is_ascii_uppercase()) {
            Cow::Owned(key.to_ascii_lowercase())
        } else {
            Cow::Borrowed(key)
        };
        cur.ws();
        if !cur.eat(b':') {
            return None;
        }
        cur.ws();
        if wanted(&key) {
            let v = cur.scalar()?;
            if pairs.len == MAX_PAIRS {
                return None;
            }
            pairs.items[pairs.len] = (key, v);
            pairs.len += 1;
        } else {
            cur.skip(MAX_DEPTH)?;
        }
        cur.ws();
        if cur.eat(b'}') {
            return Some(pairs);
        }
        if !cur.eat(b',') {
            return None;
        }
        cur.ws();
    }
}
