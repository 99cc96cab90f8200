//! Tokenizer for FHIRPath (N1 grammar, lexical rules).
//!
//! Kept separate from the parser so that the awkward lexical corners — date and
//! time literals (`@2015-02-04T14:34:28+10:00`, `@T14`), the `1.is(Integer)`
//! versus `1.5` ambiguity, escapes in strings and backtick identifiers, and
//! both comment styles — are handled in one place and the parser only sees
//! clean tokens. Every error carries the byte offset for a useful message.

use super::FhirPathError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// Plain identifier; may be a keyword (`and`, `is`, `true`, ...).
    Ident(String),
    /// Backtick-delimited identifier; never a keyword.
    DelimIdent(String),
    Str(String),
    /// Integer or decimal literal text (no sign).
    Num(String),
    Date(String),
    DateTime(String),
    Time(String),
    /// `%name`, `%'name'` or `` %`name` ``.
    External(String),
    /// `$this`, `$index`, `$total`.
    Special(String),
    Sym(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

fn err(pos: usize, msg: impl Into<String>) -> FhirPathError {
    FhirPathError::Syntax {
        pos,
        msg: msg.into(),
    }
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, FhirPathError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            match src[i + 2..].find("*/") {
                Some(end) => i = i + 2 + end + 2,
                None => return Err(err(i, "unterminated comment")),
            }
            continue;
        }
        let tok = match c {
            b'\'' => {
                let (s, n) = quoted(src, i, b'\'')?;
                i = n;
                Tok::Str(s)
            }
            b'`' => {
                let (s, n) = quoted(src, i, b'`')?;
                i = n;
                Tok::DelimIdent(s)
            }
            b'0'..=b'9' => {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                Tok::Num(src[start..i].to_string())
            }
            b'@' => {
                let (t, n) = date_literal(src, i)?;
                i = n;
                t
            }
            b'%' => {
                i += 1;
                match b.get(i) {
                    Some(b'\'') | Some(b'`') => {
                        let (s, n) = quoted(src, i, b[i])?;
                        i = n;
                        Tok::External(s)
                    }
                    Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                        let n = ident_end(b, i);
                        let s = src[i..n].to_string();
                        i = n;
                        Tok::External(s)
                    }
                    _ => return Err(err(start, "expected a name after '%'")),
                }
            }
            b'$' => {
                let n = ident_end(b, i + 1);
                let name = &src[i + 1..n];
                if !matches!(name, "this" | "index" | "total") {
                    return Err(err(start, format!("unknown special variable '${name}'")));
                }
                i = n;
                Tok::Special(name.to_string())
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let n = ident_end(b, i);
                let s = src[i..n].to_string();
                i = n;
                Tok::Ident(s)
            }
            _ => {
                let two = src.get(i..i + 2).unwrap_or("");
                let sym: &'static str = match two {
                    "<=" => "<=",
                    ">=" => ">=",
                    "!=" => "!=",
                    "!~" => "!~",
                    _ => match c {
                        b'.' => ".",
                        b'(' => "(",
                        b')' => ")",
                        b'[' => "[",
                        b']' => "]",
                        b'{' => "{",
                        b'}' => "}",
                        b',' => ",",
                        b'+' => "+",
                        b'-' => "-",
                        b'*' => "*",
                        b'/' => "/",
                        b'|' => "|",
                        b'&' => "&",
                        b'=' => "=",
                        b'~' => "~",
                        b'<' => "<",
                        b'>' => ">",
                        _ => {
                            let ch = src[i..].chars().next().unwrap_or('?');
                            return Err(err(i, format!("unexpected character '{ch}'")));
                        }
                    },
                };
                i += sym.len();
                Tok::Sym(sym)
            }
        };
        out.push(Token { tok, pos: start });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(out)
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i
}

/// Reads a quoted string or delimited identifier starting at the opening quote;
/// returns the unescaped text and the offset after the closing quote.
fn quoted(src: &str, start: usize, q: u8) -> Result<(String, usize), FhirPathError> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, ch)) = chars.next() {
        let at = start + 1 + off;
        if ch as u32 == q as u32 {
            return Ok((out, at + 1));
        }
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        let Some((_, e)) = chars.next() else { break };
        match e {
            '\'' | '"' | '`' | '\\' | '/' => out.push(e),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let mut code = 0u32;
                for _ in 0..4 {
                    let d = chars
                        .next()
                        .and_then(|(_, h)| h.to_digit(16))
                        .ok_or_else(|| err(at, "bad \\u escape"))?;
                    code = code * 16 + d;
                }
                out.push(char::from_u32(code).ok_or_else(|| err(at, "bad \\u escape"))?);
            }
            other => return Err(err(at, format!("unknown escape '\\{other}'"))),
        }
    }
    Err(err(start, "unterminated quoted text"))
}

/// Counts exactly `n` ASCII digits at `i`.
fn digits(b: &[u8], i: usize, n: usize) -> bool {
    i + n <= b.len() && b[i..i + n].iter().all(u8::is_ascii_digit)
}

/// Lexes the time part `hh(:mm(:ss(.fff)?)?)?` at `i`; returns the end offset.
fn time_part(b: &[u8], mut i: usize) -> Option<usize> {
    if !digits(b, i, 2) {
        return None;
    }
    i += 2;
    if b.get(i) == Some(&b':') && digits(b, i + 1, 2) {
        i += 3;
        if b.get(i) == Some(&b':') && digits(b, i + 1, 2) {
            i += 3;
            if b.get(i) == Some(&b'.') && digits(b, i + 1, 1) {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
    }
    Some(i)
}

/// Lexes a timezone `Z` or `(+|-)hh:mm` at `i`; returns the end offset.
fn tz_part(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'Z') => i + 1,
        Some(b'+') | Some(b'-')
            if digits(b, i + 1, 2) && b.get(i + 3) == Some(&b':') && digits(b, i + 4, 2) =>
        {
            i + 6
        }
        _ => i,
    }
}

/// Lexes `@date`, `@dateTime` or `@Ttime` starting at the `@`.
fn date_literal(src: &str, at: usize) -> Result<(Tok, usize), FhirPathError> {
    let b = src.as_bytes();
    let mut i = at + 1;
    if b.get(i) == Some(&b'T') {
        let end = time_part(b, i + 1).ok_or_else(|| err(at, "malformed time literal"))?;
        return Ok((Tok::Time(src[i + 1..end].to_string()), end));
    }
    if !digits(b, i, 4) {
        return Err(err(at, "malformed date literal"));
    }
    i += 4;
    if b.get(i) == Some(&b'-') && digits(b, i + 1, 2) {
        i += 3;
        if b.get(i) == Some(&b'-') && digits(b, i + 1, 2) {
            i += 3;
        }
    }
    if b.get(i) != Some(&b'T') {
        return Ok((Tok::Date(src[at + 1..i].to_string()), i));
    }
    i += 1;
    if let Some(end) = time_part(b, i) {
        i = tz_part(b, end);
    }
    Ok((Tok::DateTime(src[at + 1..i].to_string()), i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn integer_followed_by_function_is_not_a_decimal() {
        assert_eq!(
            toks("1.is"),
            vec![
                Tok::Num("1".into()),
                Tok::Sym("."),
                Tok::Ident("is".into()),
                Tok::Eof
            ]
        );
        assert_eq!(toks("1.5")[0], Tok::Num("1.5".into()));
    }

    #[test]
    fn date_time_literals() {
        assert_eq!(toks("@2015-02-04")[0], Tok::Date("2015-02-04".into()));
        assert_eq!(toks("@2015T")[0], Tok::DateTime("2015T".into()));
        assert_eq!(
            toks("@2015-02-04T14:34:28.123+10:00")[0],
            Tok::DateTime("2015-02-04T14:34:28.123+10:00".into())
        );
        assert_eq!(toks("@T14:34")[0], Tok::Time("14:34".into()));
        assert_eq!(toks("@2013-04-05.is(Date)")[1], Tok::Sym("."));
    }

    #[test]
    fn string_escapes_and_comments() {
        assert_eq!(toks(r"'a\'b\u002a'")[0], Tok::Str("a'b*".into()));
        assert_eq!(toks("1 // x\n /* y */ + 2").len(), 4);
        assert!(tokenize("'open").is_err());
        assert!(tokenize("1 /* open").is_err());
        assert!(tokenize("a # b").is_err());
    }
}
