//! Parser: tokens → expression tree.
//!
//! Precedence climbing over the N1 operator table. Two jobs beyond shape:
//! - Reject unknown functions and wrong argument counts at parse time, so a
//!   bad SearchParameter is reported when it is loaded, not on every write.
//! - Bound the depth of the tree ([`MAX_DEPTH`]). Parsing, evaluating and even
//!   dropping the tree recurse over it, so untrusted input like `((((…` or a
//!   100 000-term union must become an error instead of a stack overflow.
//!   A single counter rises on every nested sub-expression and every node that
//!   grows a left-deep chain (`a | b | c`, `a.b.c`), so it bounds tree depth.

use super::functions::arity;
use super::lexer::{tokenize, Tok, Token};
use super::FhirPathError;

/// Maximum nesting depth of an expression tree.
pub const MAX_DEPTH: usize = 128;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Boolean(bool),
    String(String),
    Integer(i64),
    Decimal(String),
    Date(String),
    DateTime(String),
    Time(String),
    /// Value text and unit (UCUM code or calendar keyword).
    Quantity(String, String),
}

/// A type name as written: optional namespace (`System`, `FHIR`) and name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum TypeOp {
    Is,
    As,
    OfType,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    /// `{}`
    Empty,
    Literal(Literal),
    /// Identifier at the start of a path (may be a type name filter).
    Ident(String),
    /// `target.name`
    Member(Box<Expr>, String),
    /// Function call; `target` is `None` when invoked without a dot.
    Call {
        target: Option<Box<Expr>>,
        name: String,
        args: Vec<Expr>,
    },
    /// `is` / `as` / `ofType`, as operator or function.
    Type {
        op: TypeOp,
        target: Option<Box<Expr>>,
        spec: TypeSpec,
    },
    Index(Box<Expr>, Box<Expr>),
    This,
    IndexVar,
    Total,
    External(String),
    Negate(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

/// Parses a complete expression.
pub(crate) fn parse_expr(src: &str) -> Result<Expr, FhirPathError> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        depth: 0,
    };
    let e = p.expr(0)?;
    let t = p.peek();
    if t.tok != Tok::Eof {
        return Err(p.err_at(t.pos, format!("unexpected {:?} after expression", t.tok)));
    }
    Ok(e)
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

/// What an infix token does.
enum Infix {
    Bin(BinOp),
    Type(TypeOp),
}

/// The infix operator at `tok` and its precedence level (0 = `implies`,
/// lowest; 9 = `*`, highest).
fn infix(tok: &Tok) -> Option<(usize, Infix)> {
    use BinOp::*;
    let op = match tok {
        Tok::Sym(s) => match *s {
            "*" => Mul,
            "/" => Div,
            "+" => Add,
            "-" => Sub,
            "&" => Concat,
            "|" => Union,
            "<" => Lt,
            ">" => Gt,
            "<=" => Le,
            ">=" => Ge,
            "=" => Eq,
            "!=" => Ne,
            "~" => Equiv,
            "!~" => NotEquiv,
            _ => return None,
        },
        Tok::Ident(s) => match s.as_str() {
            "div" => IntDiv,
            "mod" => Mod,
            "in" => In,
            "contains" => Contains,
            "and" => And,
            "or" => Or,
            "xor" => Xor,
            "implies" => Implies,
            "is" => return Some((7, Infix::Type(TypeOp::Is))),
            "as" => return Some((7, Infix::Type(TypeOp::As))),
            _ => return None,
        },
        _ => return None,
    };
    let level = match op {
        Implies => 0,
        Or | Xor => 1,
        And => 2,
        In | Contains => 3,
        Eq | Ne | Equiv | NotEquiv => 4,
        Lt | Gt | Le | Ge => 5,
        Union => 6,
        Add | Sub | Concat => 8,
        Mul | Div | IntDiv | Mod => 9,
    };
    Some((level, Infix::Bin(op)))
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn err_at(&self, pos: usize, msg: impl Into<String>) -> FhirPathError {
        FhirPathError::Syntax {
            pos,
            msg: msg.into(),
        }
    }

    /// Counts one more level of tree depth, failing past [`MAX_DEPTH`].
    fn deeper(&mut self) -> Result<(), FhirPathError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FhirPathError::TooDeep { limit: MAX_DEPTH });
        }
        Ok(())
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), FhirPathError> {
        let t = self.next();
        if t.tok == Tok::Sym(leak(s)) {
            Ok(())
        } else {
            Err(self.err_at(t.pos, format!("expected '{s}', found {:?}", t.tok)))
        }
    }

    /// Precedence climbing: parses operators of level `min` and above.
    /// One recursion per operand (not per level) keeps the stack shallow.
    fn expr(&mut self, min: usize) -> Result<Expr, FhirPathError> {
        let mut left = self.unary()?;
        let mut grown = 0;
        while let Some((level, op)) = infix(&self.peek().tok) {
            if level < min {
                break;
            }
            self.next();
            self.deeper()?;
            grown += 1;
            left = match op {
                Infix::Type(op) => Expr::Type {
                    op,
                    target: Some(Box::new(left)),
                    spec: self.type_spec()?,
                },
                Infix::Bin(op) => {
                    let right = self.expr(level + 1)?;
                    Expr::Binary(op, Box::new(left), Box::new(right))
                }
            };
        }
        self.depth -= grown;
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FhirPathError> {
        match self.peek().tok {
            Tok::Sym("-") | Tok::Sym("+") => {
                let neg = self.next().tok == Tok::Sym("-");
                self.deeper()?;
                let e = self.unary()?;
                self.depth -= 1;
                Ok(if neg { Expr::Negate(Box::new(e)) } else { e })
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, FhirPathError> {
        let mut e = self.term()?;
        let mut grown = 0;
        loop {
            match self.peek().tok {
                Tok::Sym(".") => {
                    self.next();
                    self.deeper()?;
                    grown += 1;
                    let t = self.next();
                    let name = match t.tok {
                        Tok::Ident(s) | Tok::DelimIdent(s) => s,
                        other => {
                            return Err(self.err_at(
                                t.pos,
                                format!("expected a name after '.', found {other:?}"),
                            ))
                        }
                    };
                    if self.peek().tok == Tok::Sym("(") {
                        e = self.call(Some(e), name, t.pos)?;
                    } else {
                        e = Expr::Member(Box::new(e), name);
                    }
                }
                Tok::Sym("[") => {
                    self.next();
                    self.deeper()?;
                    grown += 1;
                    let idx = self.expr(0)?;
                    self.expect_sym("]")?;
                    e = Expr::Index(Box::new(e), Box::new(idx));
                }
                _ => break,
            }
        }
        self.depth -= grown;
        Ok(e)
    }

    fn term(&mut self) -> Result<Expr, FhirPathError> {
        let t = self.next();
        Ok(match t.tok {
            Tok::Sym("(") => {
                self.deeper()?;
                let e = self.expr(0)?;
                self.expect_sym(")")?;
                self.depth -= 1;
                e
            }
            Tok::Sym("{") => {
                self.expect_sym("}")?;
                Expr::Empty
            }
            Tok::Str(s) => Expr::Literal(Literal::String(s)),
            Tok::Num(n) => self.number(n, t.pos)?,
            Tok::Date(s) => Expr::Literal(Literal::Date(s)),
            Tok::DateTime(s) => Expr::Literal(Literal::DateTime(s)),
            Tok::Time(s) => Expr::Literal(Literal::Time(s)),
            Tok::External(s) => Expr::External(s),
            Tok::Special(s) => match s.as_str() {
                "this" => Expr::This,
                "index" => Expr::IndexVar,
                _ => Expr::Total,
            },
            Tok::Ident(s) if s == "true" || s == "false" => {
                Expr::Literal(Literal::Boolean(s == "true"))
            }
            Tok::Ident(s) | Tok::DelimIdent(s) => {
                if self.peek().tok == Tok::Sym("(") {
                    self.call(None, s, t.pos)?
                } else {
                    Expr::Ident(s)
                }
            }
            Tok::Eof => return Err(self.err_at(t.pos, "unexpected end of expression")),
            other => return Err(self.err_at(t.pos, format!("unexpected {other:?}"))),
        })
    }

    /// A number literal, possibly followed by a unit making it a quantity.
    fn number(&mut self, n: String, pos: usize) -> Result<Expr, FhirPathError> {
        let unit = match &self.peek().tok {
            Tok::Str(u) => Some(u.clone()),
            Tok::Ident(u) if is_calendar_unit(u) => Some(u.clone()),
            _ => None,
        };
        if let Some(u) = unit {
            self.next();
            return Ok(Expr::Literal(Literal::Quantity(n, u)));
        }
        if n.contains('.') {
            return Ok(Expr::Literal(Literal::Decimal(n)));
        }
        match n.parse::<i64>() {
            Ok(v) => Ok(Expr::Literal(Literal::Integer(v))),
            Err(_) => Err(self.err_at(pos, format!("integer literal {n} out of range"))),
        }
    }

    fn call(
        &mut self,
        target: Option<Expr>,
        name: String,
        pos: usize,
    ) -> Result<Expr, FhirPathError> {
        self.expect_sym("(")?;
        self.deeper()?;
        let type_op = match name.as_str() {
            "is" => Some(TypeOp::Is),
            "as" => Some(TypeOp::As),
            "ofType" => Some(TypeOp::OfType),
            _ => None,
        };
        let target = target.map(Box::new);
        let e = if let Some(op) = type_op {
            let spec = self.type_spec()?;
            self.expect_sym(")")?;
            Expr::Type { op, target, spec }
        } else {
            let mut args = Vec::new();
            if self.peek().tok != Tok::Sym(")") {
                loop {
                    args.push(self.expr(0)?);
                    if self.peek().tok == Tok::Sym(",") {
                        self.next();
                        continue;
                    }
                    break;
                }
            }
            self.expect_sym(")")?;
            let (min, max) =
                arity(&name).ok_or_else(|| FhirPathError::UnknownFunction(name.clone()))?;
            if args.len() < min || args.len() > max {
                return Err(FhirPathError::Arity {
                    function: name,
                    got: args.len(),
                    pos,
                });
            }
            Expr::Call { target, name, args }
        };
        self.depth -= 1;
        Ok(e)
    }

    /// `Name` or `Namespace.Name` (either part may be backtick-delimited).
    fn type_spec(&mut self) -> Result<TypeSpec, FhirPathError> {
        let t = self.next();
        let first = match t.tok {
            Tok::Ident(s) | Tok::DelimIdent(s) => s,
            other => {
                return Err(self.err_at(t.pos, format!("expected a type name, found {other:?}")))
            }
        };
        if self.peek().tok == Tok::Sym(".") {
            if let Some(Tok::Ident(_) | Tok::DelimIdent(_)) =
                self.toks.get(self.i + 1).map(|t| &t.tok)
            {
                if first == "System" || first == "FHIR" {
                    self.next();
                    let name = match self.next().tok {
                        Tok::Ident(s) | Tok::DelimIdent(s) => s,
                        _ => unreachable!("checked above"),
                    };
                    return Ok(TypeSpec {
                        namespace: Some(first),
                        name,
                    });
                }
            }
        }
        Ok(TypeSpec {
            namespace: None,
            name: first,
        })
    }
}

/// Maps a symbol to its `'static` spelling for comparison with [`Tok::Sym`].
fn leak(s: &str) -> &'static str {
    match s {
        ")" => ")",
        "]" => "]",
        "}" => "}",
        "(" => "(",
        _ => "",
    }
}

pub(crate) fn is_calendar_unit(u: &str) -> bool {
    matches!(
        u,
        "year"
            | "years"
            | "month"
            | "months"
            | "week"
            | "weeks"
            | "day"
            | "days"
            | "hour"
            | "hours"
            | "minute"
            | "minutes"
            | "second"
            | "seconds"
            | "millisecond"
            | "milliseconds"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_of_union_and_type_operators() {
        let e = parse_expr("(A.value as Quantity) | B.x").unwrap();
        assert!(matches!(e, Expr::Binary(BinOp::Union, _, _)));
        let e = parse_expr("a.b is Patient").unwrap();
        assert!(matches!(e, Expr::Type { op: TypeOp::Is, .. }));
        // `*` binds tighter than `+`, which binds tighter than `=`.
        let e = parse_expr("1 + 2 * 3 = 7").unwrap();
        let Expr::Binary(BinOp::Eq, l, _) = e else {
            panic!()
        };
        assert!(matches!(*l, Expr::Binary(BinOp::Add, _, _)));
    }

    #[test]
    fn qualified_type_names() {
        let e = parse_expr("1.is(System.Integer)").unwrap();
        let Expr::Type { spec, .. } = e else { panic!() };
        assert_eq!(spec.namespace.as_deref(), Some("System"));
        assert_eq!(spec.name, "Integer");
    }

    #[test]
    fn bad_syntax_is_an_error_not_a_panic() {
        for src in [
            "",
            "(",
            ")",
            "a.",
            "a..b",
            "a.where(",
            "a.where(b",
            "1 +",
            "* 2",
            "a[1",
            "a]",
            "{",
            "{1}",
            "a.(b)",
            "'x",
            "@",
            "@T",
            "%",
            "$foo",
            "a is",
            "a.is()",
            "1 2",
            "a.b(,)",
            "9999999999999999999999",
            "a.where(x,)",
            ".a",
            "a | | b",
            "a.is(1)",
            "\u{0}",
            "é",
        ] {
            assert!(parse_expr(src).is_err(), "{src:?} should not parse");
        }
    }

    #[test]
    fn unknown_functions_and_wrong_arity_are_rejected() {
        assert!(matches!(
            parse_expr("a.frobnicate()"),
            Err(FhirPathError::UnknownFunction(_))
        ));
        assert!(matches!(
            parse_expr("a.where()"),
            Err(FhirPathError::Arity { .. })
        ));
        assert!(matches!(
            parse_expr("a.first(1)"),
            Err(FhirPathError::Arity { .. })
        ));
    }

    #[test]
    fn deep_nesting_is_capped_not_overflowing() {
        let n = 100_000;
        let cases = [
            format!("{}1{}", "(".repeat(n), ")".repeat(n)),
            format!("{}1", "-".repeat(n)),
            vec!["a"; n].join("."),
            vec!["a"; n].join(" | "),
            vec!["1"; n].join("+"),
            format!("{}1{}", "a.where(".repeat(n), ")".repeat(n)),
            format!("a{}", "[0]".repeat(n)),
        ];
        for src in cases {
            assert!(matches!(
                parse_expr(&src),
                Err(FhirPathError::TooDeep { .. })
            ));
        }
        // Moderate nesting is fine.
        assert!(parse_expr(&format!("{}1{}", "(".repeat(40), ")".repeat(40))).is_ok());
        assert!(parse_expr(&vec!["a.b"; 60].join(" | ")).is_ok());
    }
}
