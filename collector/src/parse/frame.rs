//! The fast path of json-file framing: a line exactly as Docker writes it,
//! `{"log":"…","stream":"…","time":"…"}`, decoded without serde.
//!
//! It accepts only lines that serde (the fallback in [`super::docker_json`]) would decode to
//! the same fields: that exact key order, no whitespace, no `attrs`, valid UTF-8, no control
//! bytes, no escapes in `stream` and `time`, no surrogate escapes in `log`. Anything else
//! returns `None` and goes to serde, so errors and unusual lines are decoded as before.

const PREFIX: &[u8] = br#"{"log":""#;
const STREAM: &[u8] = br#","stream":""#;
const TIME: &[u8] = br#"","time":""#;

/// `stream` and `time` of a decoded line, borrowed from it.
pub struct Frame<'a> {
    /// The `stream` value.
    pub stream: &'a str,
    /// The `time` value (not checked to be UTF-8: a timestamp parser reads it).
    pub time: &'a [u8],
}

/// A mask with the high bit set in each byte of the 8-byte `w` that is `"` or `\\`; the
/// lowest set bit marks the first such byte exactly (bits above it may be spurious).
#[inline(always)]
pub fn quote_or_backslash(w: &[u8]) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    zero(w ^ (LO * b'"' as u64)) | zero(w ^ (LO * b'\\' as u64))
}

/// Position of the first `"` or `\\` in `b` at or after `i`.
#[inline]
pub fn find_quote_or_backslash(b: &[u8], mut i: usize) -> Option<usize> {
    for _ in 0..4 {
        let Some(w) = b.get(i..i + 8) else { break };
        let m = quote_or_backslash(w);
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    Some(i + memchr::memchr2(b'"', b'\\', b.get(i..)?)?)
}

/// True when every byte is printable ASCII (0x20..0x7e).
fn printable_ascii(b: &[u8]) -> bool {
    !any_byte(b, |c| c.wrapping_sub(0x20) >= 0x5f)
}

/// True when a byte is a control byte (below 0x20).
pub fn has_control(b: &[u8]) -> bool {
    any_byte(b, |c| c < 0x20)
}

/// Whether `f` holds for a byte: 32 bytes at a time, branch-free inside, so it vectorises.
#[inline(always)]
fn any_byte(b: &[u8], f: impl Fn(u8) -> bool) -> bool {
    let mut chunks = b.chunks_exact(32);
    for c in &mut chunks {
        if c.iter().fold(false, |acc, &x| acc | f(x)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&x| f(x))
}

fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(..4)? {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// Decodes `line` when it is in Docker's exact framing: the unescaped `log` value (written
/// into `log`, an empty buffer), and `stream` and `time` borrowed from the line. `None`: not
/// that form.
pub fn decode(line: &[u8], mut log: Vec<u8>) -> Option<(String, Frame<'_>)> {
    let rest = line.strip_prefix(PREFIX)?;
    // Control bytes are errors inside JSON strings and not whitespace here (serde reports
    // them); UTF-8 is checked once on the unescaped text (escapes only add whole chars, so
    // it is valid exactly when the raw value is).
    if !printable_ascii(line) && has_control(line) {
        return None;
    }
    // The value is shorter than the line (escapes only shrink it), even with the up to 7
    // bytes past its end that the word-wise copy below writes before cutting them off.
    log.reserve(line.len());
    let mut i = 0;
    loop {
        // Eight bytes at a time, copied as they are scanned; memchr past a long run.
        let mut k = None;
        for _ in 0..4 {
            let Some(w) = rest.get(i..i + 8) else { break };
            log.extend_from_slice(w);
            let m = quote_or_backslash(w);
            if m != 0 {
                let p = (m.trailing_zeros() / 8) as usize;
                log.truncate(log.len() - 8 + p);
                k = Some(i + p);
                break;
            }
            i += 8;
        }
        let k = match k {
            Some(k) => k,
            None => {
                let k = i + memchr::memchr2(b'"', b'\\', &rest[i..])?;
                log.extend_from_slice(&rest[i..k]);
                k
            }
        };
        if rest[k] == b'"' {
            i = k + 1;
            break;
        }
        let c = match *rest.get(k + 1)? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                // Surrogates (pairs or lone) are left to serde.
                let c = char::from_u32(hex4(&rest[k + 2..])?)?;
                log.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                i = k + 6;
                continue;
            }
            _ => return None,
        };
        log.push(c);
        i = k + 2;
    }
    // `stream` and `time` end at the next `"`; an escape in them is left to serde.
    let rest = rest[i..].strip_prefix(STREAM)?;
    let (stream, rest) = rest.split_at(find_quote_or_backslash(rest, 0)?);
    let rest = rest.strip_prefix(TIME)?;
    let (time, rest) = rest.split_at(find_quote_or_backslash(rest, 0)?);
    if rest != b"\"}" {
        return None;
    }
    let stream = match stream {
        b"stdout" => "stdout",
        b"stderr" => "stderr",
        other => std::str::from_utf8(other).ok()?,
    };
    if !time.is_ascii() {
        // Whatever it holds must still be valid UTF-8, as serde requires.
        std::str::from_utf8(time).ok()?;
    }
    let frame = Frame { stream, time };
    Some((String::from_utf8(log).ok()?, frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde makes of the line, as the fallback would.
    fn serde(line: &[u8]) -> Option<(String, String, String)> {
        #[derive(serde::Deserialize)]
        struct F {
            #[serde(default)]
            log: String,
            #[serde(default)]
            stream: String,
            #[serde(default)]
            time: String,
        }
        let f: F = serde_json::from_slice(line).ok()?;
        Some((f.log, f.stream, f.time))
    }

    fn check(line: &[u8]) {
        if let Some((log, f)) = decode(line, Vec::new()) {
            let want = serde(line).expect("fast path accepted a line serde rejects");
            assert_eq!(
                (
                    log,
                    f.stream.to_string(),
                    String::from_utf8(f.time.to_vec()).unwrap()
                ),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn docker_lines_take_the_fast_path() {
        let line = br#"{"log":"{\"a\":1}\tx\u00e9\u2028\/\\ \n","stream":"stderr","time":"2019-01-01T11:11:11.111111111Z"}"#;
        let (log, f) = decode(line, Vec::new()).expect("fast");
        assert_eq!(log, "{\"a\":1}\txé\u{2028}/\\ \n");
        assert_eq!(f.stream, "stderr");
        assert_eq!(f.time, b"2019-01-01T11:11:11.111111111Z");
        check(line);
        let utf = "{\"log\":\"héllo → 世界\\n\",\"stream\":\"stdout\",\"time\":\"t\"}";
        assert_eq!(
            decode(utf.as_bytes(), Vec::new()).expect("fast").0,
            "héllo → 世界\n"
        );
        check(utf.as_bytes());
    }

    #[test]
    fn word_scan_finds_the_first_special_byte() {
        let text = "abcdefgh\"ijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP\\x";
        for i in 0..text.len() {
            let want = text[i..].find(['"', '\\']).map(|k| k + i);
            assert_eq!(find_quote_or_backslash(text.as_bytes(), i), want, "{i}");
        }
        assert_eq!(find_quote_or_backslash(b"\xa2\xdc\"", 0), Some(2));
    }

    #[test]
    fn anything_unusual_falls_back() {
        for line in [
            &br#"{"log":"x\n","stream":"stdout","attrs":{"a":"b"},"time":"t"}"#[..],
            br#"{"log":"x\n","stream":"stdout","time":"t"} "#,
            br#"{"log":"x\n", "stream":"stdout","time":"t"}"#,
            br#"{"log":"x\n","time":"t","stream":"stdout"}"#,
            br#"{"log":"\ud83d\ude00","stream":"stdout","time":"t"}"#,
            br#"{"log":"\ud800","stream":"stdout","time":"t"}"#,
            br#"{"log":"\q","stream":"stdout","time":"t"}"#,
            br#"{"log":"\u12","stream":"stdout","time":"t"}"#,
            br#"{"log":"x","stream":"std\"out","time":"t"}"#,
            br#"{"log":"x","stream":"stdout","time":"t\u0031"}"#,
            b"{\"log\":\"a\tb\",\"stream\":\"stdout\",\"time\":\"t\"}",
            b"{\"log\":\"\xff\",\"stream\":\"stdout\",\"time\":\"t\"}",
            br#"{"log":"trunc"#,
            br#"{"log":"x","stream":"stdout","time":"t"}}"#,
        ] {
            assert!(
                decode(line, Vec::new()).is_none(),
                "{}",
                String::from_utf8_lossy(line)
            );
            check(line);
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_serde(log in "\\PC{0,40}", stream in "[a-z\"\\\\]{0,8}", raw in proptest::collection::vec(proptest::num::u8::ANY, 0..60)) {
            let line = serde_json::json!({"log": log, "stream": stream, "time": "2019-01-01T11:11:11Z"}).to_string();
            // serde_json::json! sorts keys: rebuild Docker's order.
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let docker = format!(
                r#"{{"log":{},"stream":{},"time":{}}}"#,
                v["log"], v["stream"], v["time"]
            );
            proptest::prop_assert!(stream.contains(['"', '\\']) || decode(docker.as_bytes(), Vec::new()).is_some());
            check(docker.as_bytes());
            // Arbitrary bytes inside the log value.
            let mut bytes = br#"{"log":""#.to_vec();
            bytes.extend_from_slice(&raw);
            bytes.extend_from_slice(br#"","stream":"stdout","time":"t"}"#);
            check(&bytes);
        }
    }
}
