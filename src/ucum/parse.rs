//! The UCUM grammar (UCUM §2, "Syntax rules"):
//!
//! ```text
//! main-term   ::= "/" term | term
//! term        ::= term "." component | term "/" component | component
//! component   ::= annotatable annotation | annotatable | annotation | factor | "(" term ")"
//! annotatable ::= simple-unit exponent | simple-unit
//! simple-unit ::= ATOM | PREFIX ATOM(metric)
//! exponent    ::= ("+" | "-")? digits          factor ::= digits
//! annotation  ::= "{" ASCII 33-126 except "{" "}" "}"
//! ```
//!
//! `.` and `/` are left-associative (`kg/m.s` is `(kg/m).s`). Atom codes never end in a digit
//! (checked when the table is generated), so a trailing run of digits is the exponent. Square
//! brackets belong to the atom and may hold `.` or `/` (`[m/s2/Hz^(1/2)]`).

use std::collections::HashMap;

use super::term::Term;
use super::UcumError;

/// An atom as the parser needs it: its value in base units, whether it takes prefixes, and
/// whether it is special (non-linear: only usable alone, see `mod.rs`).
#[derive(Debug, Clone)]
pub struct AtomInfo {
    pub term: Term,
    pub metric: bool,
    pub special: Option<String>,
}

pub type Lookup<'l> = dyn FnMut(&str) -> Result<Option<AtomInfo>, UcumError> + 'l;

/// A parsed unit and whether a special atom occurs in it.
pub struct Parsed {
    pub term: Term,
    pub special: bool,
}

pub fn parse(
    unit: &str,
    prefixes: &HashMap<String, f64>,
    lookup: &mut Lookup<'_>,
) -> Result<Parsed, UcumError> {
    let malformed = |reason: &str| UcumError::Malformed {
        unit: unit.to_owned(),
        reason: reason.to_owned(),
    };
    if unit.is_empty() {
        return Err(malformed("empty unit"));
    }
    if let Some(c) = unit.chars().find(|c| !('!'..='~').contains(c)) {
        return Err(malformed(&format!(
            "character {c:?} is not allowed (printable ASCII without spaces only)"
        )));
    }
    let mut parser = Parser {
        unit,
        s: unit.as_bytes(),
        pos: 0,
        prefixes,
        lookup,
        special: false,
    };
    let term = if parser.eat(b'/') {
        Term::one().mul(&parser.term()?, -1)
    } else {
        parser.term()?
    };
    if parser.pos < parser.s.len() {
        return Err(malformed(&format!(
            "unexpected '{}' at position {}",
            parser.s[parser.pos] as char,
            parser.pos + 1
        )));
    }
    if !term.factor.is_finite() || term.factor == 0.0 {
        return Err(malformed("factor out of range"));
    }
    Ok(Parsed {
        term,
        special: parser.special,
    })
}

struct Parser<'s, 'p, 'l, 'm> {
    unit: &'s str,
    s: &'s [u8],
    pos: usize,
    prefixes: &'p HashMap<String, f64>,
    lookup: &'m mut Lookup<'l>,
    special: bool,
}

impl Parser<'_, '_, '_, '_> {
    fn malformed(&self, reason: impl Into<String>) -> UcumError {
        UcumError::Malformed {
            unit: self.unit.to_owned(),
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn term(&mut self) -> Result<Term, UcumError> {
        let mut term = self.component()?;
        loop {
            let sign = match self.peek() {
                Some(b'.') => 1,
                Some(b'/') => -1,
                _ => return Ok(term),
            };
            self.pos += 1;
            term = term.mul(&self.component()?, sign);
        }
    }

    fn component(&mut self) -> Result<Term, UcumError> {
        match self.peek() {
            None => Err(self.malformed("a unit is missing at the end")),
            Some(b'(') => {
                self.pos += 1;
                let term = self.term()?;
                if !self.eat(b')') {
                    return Err(self.malformed("unclosed '('"));
                }
                Ok(term)
            }
            Some(b'{') => {
                self.annotation()?;
                Ok(Term::one())
            }
            Some(c @ (b'.' | b'/' | b')' | b'}')) => Err(self.malformed(format!(
                "a unit is missing before '{}' at position {}",
                c as char,
                self.pos + 1
            ))),
            Some(_) => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    match c {
                        b'[' => match self.s[self.pos..].iter().position(|&b| b == b']') {
                            Some(end) => self.pos += end + 1,
                            None => return Err(self.malformed("unclosed '['")),
                        },
                        b']' => return Err(self.malformed("']' without '['")),
                        b'.' | b'/' | b'(' | b')' | b'{' | b'}' => break,
                        _ => self.pos += 1,
                    }
                }
                let symbol = &self.unit[start..self.pos];
                if self.peek() == Some(b'{') {
                    self.annotation()?;
                }
                self.annotatable(symbol)
            }
        }
    }

    /// Skips an annotation: it carries meaning for people only (`{rbc}`), not for conversion.
    fn annotation(&mut self) -> Result<(), UcumError> {
        self.pos += 1;
        match self.s[self.pos..]
            .iter()
            .position(|&b| b == b'}' || b == b'{')
        {
            Some(end) if self.s[self.pos + end] == b'}' => {
                self.pos += end + 1;
                Ok(())
            }
            _ => Err(self.malformed("unclosed '{'")),
        }
    }

    fn annotatable(&mut self, symbol: &str) -> Result<Term, UcumError> {
        let bytes = symbol.as_bytes();
        if bytes.iter().all(u8::is_ascii_digit) {
            let factor: f64 = symbol.parse().map_err(|_| self.malformed("bad factor"))?;
            return Ok(Term::number(factor));
        }
        let mut split = bytes.len();
        while split > 0 && bytes[split - 1].is_ascii_digit() {
            split -= 1;
        }
        if split < bytes.len() && split > 0 && matches!(bytes[split - 1], b'+' | b'-') {
            split -= 1;
        }
        let (simple, exponent) = symbol.split_at(split);
        if simple.is_empty() {
            return Err(self.malformed(format!("'{symbol}' has an exponent but no unit")));
        }
        let exponent: i32 = if exponent.is_empty() {
            1
        } else {
            exponent
                .parse()
                .ok()
                .filter(|e: &i32| e.abs() <= 1000)
                .ok_or_else(|| self.malformed(format!("exponent '{exponent}' out of range")))?
        };
        Ok(self.simple_unit(simple)?.pow(exponent))
    }

    /// An atom, or a prefix followed by a metric atom (the whole symbol as an atom first:
    /// `cd` is candela, not centi-day).
    fn simple_unit(&mut self, symbol: &str) -> Result<Term, UcumError> {
        if let Some(atom) = (self.lookup)(symbol)? {
            self.special |= atom.special.is_some();
            return Ok(atom.term);
        }
        let mut not_metric = None;
        for (prefix, factor) in self.prefixes {
            let Some(rest) = symbol.strip_prefix(prefix.as_str()) else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            match (self.lookup)(rest)? {
                Some(atom) if atom.metric => {
                    self.special |= atom.special.is_some();
                    return Ok(atom.term.scaled(*factor));
                }
                Some(_) => not_metric = Some(rest.to_owned()),
                None => {}
            }
        }
        if let Some(rest) = not_metric {
            return Err(self.malformed(format!("'{rest}' is not metric and takes no prefix")));
        }
        Err(UcumError::Unknown(symbol.to_owned()))
    }
}
