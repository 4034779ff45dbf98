//! Tokens of the expression language, with byte positions for errors.

use super::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Number(f64),
    Str(String),
    /// A duration outside a range (`5m`).
    Duration(String),
    /// The raw text between `[` and `]` (a duration, or a subquery which we reject).
    Range(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Assign,  // =
    Ne,      // !=
    ReMatch, // =~
    ReNot,   // !~
    EqEq,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    At,
    Eof,
}

pub(super) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// Splits `src` into tokens. Errors: unterminated strings/ranges, unknown characters.
pub(super) fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let pos = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            // Comment to end of line, as PromQL.
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let two = if i + 1 < b.len() { &src[i..i + 2] } else { "" };
        let (tok, len) = match two {
            "!=" => (Tok::Ne, 2),
            "=~" => (Tok::ReMatch, 2),
            "!~" => (Tok::ReNot, 2),
            "==" => (Tok::EqEq, 2),
            "<=" => (Tok::Le, 2),
            ">=" => (Tok::Ge, 2),
            _ => match c {
                b'(' => (Tok::LParen, 1),
                b')' => (Tok::RParen, 1),
                b'{' => (Tok::LBrace, 1),
                b'}' => (Tok::RBrace, 1),
                b',' => (Tok::Comma, 1),
                b'=' => (Tok::Assign, 1),
                b'<' => (Tok::Lt, 1),
                b'>' => (Tok::Gt, 1),
                b'+' => (Tok::Plus, 1),
                b'-' => (Tok::Minus, 1),
                b'*' => (Tok::Star, 1),
                b'/' => (Tok::Slash, 1),
                b'%' => (Tok::Percent, 1),
                b'^' => (Tok::Caret, 1),
                b'@' => (Tok::At, 1),
                b'[' => {
                    let Some(end) = src[i..].find(']') else {
                        return Err(ParseError::at(src, pos, "unclosed range: missing ']'"));
                    };
                    let raw = src[i + 1..i + end].trim().to_string();
                    out.push(Token {
                        tok: Tok::Range(raw),
                        pos,
                    });
                    i += end + 1;
                    continue;
                }
                b'"' | b'\'' | b'`' => {
                    let (s, len) = lex_string(src, i)?;
                    out.push(Token {
                        tok: Tok::Str(s),
                        pos,
                    });
                    i += len;
                    continue;
                }
                _ if c.is_ascii_digit()
                    || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
                {
                    let mut j = i;
                    while j < b.len()
                        && (b[j].is_ascii_alphanumeric()
                            || b[j] == b'.'
                            || ((b[j] == b'+' || b[j] == b'-')
                                && matches!(b[j - 1], b'e' | b'E')
                                && !src[i..j].starts_with("0x")))
                    {
                        j += 1;
                    }
                    let text = &src[i..j];
                    let tok = match parse_number(text) {
                        Some(v) => Tok::Number(v),
                        // `5m` outside brackets (offset, or a typo): a duration token the
                        // parser rejects in context.
                        None if crate::rules::duration::parse_duration_ms(text).is_ok() => {
                            Tok::Duration(text.to_string())
                        }
                        None => {
                            return Err(ParseError::at(src, pos, format!("bad number {text:?}")))
                        }
                    };
                    out.push(Token { tok, pos });
                    i = j;
                    continue;
                }
                _ if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                    let mut j = i;
                    while j < b.len()
                        && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':')
                    {
                        j += 1;
                    }
                    let word = &src[i..j];
                    let tok = match word.to_ascii_lowercase().as_str() {
                        "inf" => Tok::Number(f64::INFINITY),
                        "nan" => Tok::Number(f64::NAN),
                        _ => Tok::Ident(word.to_string()),
                    };
                    out.push(Token { tok, pos });
                    i = j;
                    continue;
                }
                _ => {
                    let ch = src[i..].chars().next().unwrap_or('?');
                    return Err(ParseError::at(
                        src,
                        pos,
                        format!("unexpected character {ch:?}"),
                    ));
                }
            },
        };
        out.push(Token { tok, pos });
        i += len;
    }
    // End-of-input errors point just after the last non-blank character.
    out.push(Token {
        tok: Tok::Eof,
        pos: src.trim_end().len(),
    });
    Ok(out)
}

fn parse_number(text: &str) -> Option<f64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    if text
        .bytes()
        .any(|c| c.is_ascii_alphabetic() && c != b'e' && c != b'E')
    {
        return None;
    }
    text.parse().ok()
}

/// A quoted string: `"…"`/`'…'` with Go escapes (`\n`, `\t`, `\\`, `\"`, `\'`), or a raw
/// `` `…` ``. Returns the value and the byte length consumed.
fn lex_string(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, ch)) = chars.next() {
        if ch == quote {
            return Ok((out, off + 2));
        }
        if ch == '\n' && quote != '`' {
            break;
        }
        if ch == '\\' && quote != '`' {
            let Some((eoff, e)) = chars.next() else { break };
            out.push(match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' | '"' | '\'' | '`' => e,
                _ => {
                    return Err(ParseError::at(
                        src,
                        start + 1 + eoff - 1,
                        format!("unknown escape sequence \\{e}"),
                    ))
                }
            });
            continue;
        }
        out.push(ch);
    }
    Err(ParseError::at(src, start, "unterminated string"))
}
