//! The SQL builder at the bottom of the store: statement text with its bound values
//! ([`Bind`]), placeholders numbered as each [`Dialect`] wants (`?` on SQLite, `$1` on
//! PostgreSQL). The statements are the same on both databases apart from that, so every file
//! above builds them once with a `Dialect` and each store binds the values.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Float(f64),
    Bool(bool),
    OptInt(Option<i64>),
}

/// SQL text with its bound values, placeholders numbered as the dialect wants.
#[derive(Clone)]
pub struct Sql {
    dialect: Dialect,
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Self {
        Sql {
            dialect,
            text: String::new(),
            binds: Vec::new(),
        }
    }

    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    pub fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.binds.len().to_string());
            }
        }
        self
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.bind(Bind::Text(value.to_owned()))
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        self.bind(Bind::Int(value))
    }

    /// `values` bound one after another, separated by commas (the inside of an `IN (…)`).
    pub fn ints(&mut self, values: &[i64]) -> &mut Self {
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.int(*value);
        }
        self
    }

    pub fn opt(&mut self, value: Option<&str>) -> &mut Self {
        self.bind(Bind::OptText(value.map(str::to_owned)))
    }

    pub fn float(&mut self, value: f64) -> &mut Self {
        self.bind(Bind::Float(value))
    }

    /// SQLite only: `statements` as one text, separated by `;`, with their values in order
    /// (SQLite's placeholders are anonymous, so each statement takes the next values); run
    /// in one call, they run one after the other as if sent one by one. `None` for none.
    pub fn join(statements: Vec<Sql>) -> Option<Sql> {
        let mut statements = statements.into_iter();
        let mut joined = statements.next()?;
        debug_assert_eq!(joined.dialect, Dialect::Sqlite, "numbered placeholders");
        for statement in statements {
            joined.text.push_str("; ");
            joined.text.push_str(&statement.text);
            joined.binds.extend(statement.binds);
        }
        Some(joined)
    }
}

/// The most values one statement binds: below both SQLite's (32,766) and PostgreSQL's (65,535)
/// limits. Long chains over many target types can go past it; they are refused, not sent.
pub const MAX_BINDS: usize = 30_000;

/// Refuses a statement with more bound values than `MAX_BINDS`.
pub fn check(sql: &Sql) -> Result<(), crate::store::StoreError> {
    if sql.binds.len() > MAX_BINDS {
        return Err(crate::store::StoreError::TooComplex(format!(
            "The search is too complex: it needs {} values in one query, at most {MAX_BINDS} are allowed",
            sql.binds.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::super::*;

    #[test]
    fn placeholders_are_question_marks_on_sqlite_and_numbered_on_postgresql() {
        assert_sql(
            |d| {
                let mut sql = Sql::new(d);
                sql.push("SELECT ")
                    .text("a")
                    .push(", ")
                    .int(1)
                    .push(", ")
                    .float(0.5);
                sql.push(", ").opt(None).push(", ").bind(Bind::Bool(true));
                sql.push(", ").bind(Bind::OptInt(Some(2)));
                sql
            },
            "SELECT ?, ?, ?, ?, ?, ?",
            "SELECT $1, $2, $3, $4, $5, $6",
            r#""a", 1, 0.5, None, true, Some(2)"#,
        );
    }

    #[test]
    fn joined_statements_keep_their_values_in_order() {
        let mut first = Sql::new(Dialect::Sqlite);
        first.push("DELETE FROM a WHERE rid = ").int(1);
        let mut second = Sql::new(Dialect::Sqlite);
        second
            .push("INSERT INTO b VALUES (")
            .text("x")
            .push(", ")
            .int(2)
            .push(")");
        let joined = Sql::join(vec![first, second]).unwrap();
        assert_eq!(
            joined.text,
            "DELETE FROM a WHERE rid = ?; INSERT INTO b VALUES (?, ?)"
        );
        assert_eq!(
            joined.binds,
            vec![Bind::Int(1), Bind::Text("x".into()), Bind::Int(2)]
        );
        assert!(Sql::join(Vec::new()).is_none());
    }

    #[test]
    fn a_statement_with_more_than_max_binds_values_is_refused() {
        let mut sql = Sql::new(Dialect::Postgres);
        for i in 0..MAX_BINDS {
            sql.int(i as i64);
        }
        assert!(check(&sql).is_ok());
        sql.int(0);
        assert!(matches!(
            check(&sql),
            Err(crate::store::StoreError::TooComplex(_))
        ));
    }
}
