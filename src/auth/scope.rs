//! SMART scopes (App Launch 1.0 `read`/`write`/`*` and 2.0 `cruds` with granular `?param=value`
//! filters) and what a set of them allows.

use crate::search::definitions::{ParamType, Registry};
use crate::search::index::IndexEntries;
use crate::search::query::{Predicate, TokenSystem};

/// Who the scope speaks for: `patient/`, `user/` or `system/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Patient,
    User,
    System,
}

/// One of SMART 2.0's permissions (`c r u d s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Create = 1,
    Read = 2,
    Update = 4,
    Delete = 8,
    Search = 16,
}

impl Perm {
    pub fn letter(self) -> char {
        match self {
            Perm::Create => 'c',
            Perm::Read => 'r',
            Perm::Update => 'u',
            Perm::Delete => 'd',
            Perm::Search => 's',
        }
    }
}

const ALL: u8 = 31;

/// A resource scope such as `system/Observation.rs?category=vital-signs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: Context,
    /// `None` for `*`.
    pub rtype: Option<String>,
    perms: u8,
    /// Granular filter: token parameters and values (`category`, `vital-signs`) that must all
    /// match.
    pub filter: Vec<(String, String)>,
}

/// The type whose resources only the server writes and only an explicitly named scope reads:
/// a `*` scope never covers the audit trail.
pub const ADMIN_ONLY: &str = "AuditEvent";

impl Scope {
    /// Parses a resource scope. `Ok(None)` for scopes that are not about resources (`openid`,
    /// `launch/patient`, `offline_access`, …); `Err` for a malformed resource scope.
    pub fn parse(text: &str) -> Result<Option<Scope>, String> {
        let Some((context, rest)) = text.split_once('/') else {
            return Ok(None);
        };
        let context = match context {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => return Ok(None),
        };
        let (resource, rest) = rest
            .split_once('.')
            .ok_or_else(|| format!("scope '{text}' has no permissions after the type"))?;
        let (perms, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let rtype = match resource {
            "*" => None,
            t if crate::fhir::resource_types::is_resource_type(t) => Some(t.to_owned()),
            t => {
                return Err(format!(
                    "scope '{text}' names an unknown resource type '{t}'"
                ))
            }
        };
        let perms = match perms {
            "read" => Perm::Read as u8 | Perm::Search as u8,
            "write" => Perm::Create as u8 | Perm::Update as u8 | Perm::Delete as u8,
            "*" => ALL,
            letters => {
                // SMART 2.0: a subset of c r u d s, in that order, each at most once.
                let mut bits = 0u8;
                let mut last = 0usize;
                for ch in letters.chars() {
                    let at = "cruds".find(ch).ok_or_else(|| {
                        format!("scope '{text}' has an unknown permission '{ch}'")
                    })?;
                    if at < last {
                        return Err(format!(
                            "scope '{text}': permissions must be in the order c r u d s"
                        ));
                    }
                    last = at + 1;
                    bits |= 1 << at;
                }
                if bits == 0 {
                    return Err(format!("scope '{text}' has no permissions"));
                }
                bits
            }
        };
        let mut filter = Vec::new();
        if let Some(query) = query {
            let Some(rtype) = &rtype else {
                return Err(format!("scope '{text}': a filter needs a resource type"));
            };
            for (param, value) in url::form_urlencoded::parse(query.as_bytes()) {
                // Against the official parameters: a token's scopes outlive any
                // SearchParameter a client may post.
                let known = Registry::official()
                    .get(rtype, &param)
                    .is_some_and(|p| p.kind == ParamType::Token);
                if !known || value.is_empty() {
                    return Err(format!(
                        "scope '{text}': filters are token parameters of {rtype} with a value"
                    ));
                }
                filter.push((param.into_owned(), value.into_owned()));
            }
        }
        Ok(Some(Scope {
            context,
            rtype,
            perms,
            filter,
        }))
    }

    pub fn has(&self, perm: Perm) -> bool {
        self.perms & perm as u8 != 0
    }

    /// Whether the scope is about `rtype` (a `*` scope covers every type but the audit trail).
    pub fn names(&self, rtype: &str) -> bool {
        match &self.rtype {
            Some(t) => t == rtype,
            None => rtype != ADMIN_ONLY,
        }
    }

    /// Whether granting `self` gives at least everything `other` asks for (so `other` may be
    /// granted to a client registered with `self`). The type is compared with [`Scope::names`],
    /// the rule requests are checked by: a `*` scope covers every type but the audit trail,
    /// at the token endpoint as at request time.
    pub fn covers(&self, other: &Scope) -> bool {
        let types = match &other.rtype {
            Some(rtype) => self.names(rtype),
            None => self.rtype.is_none(),
        };
        self.context == other.context
            && types
            && other.perms & !self.perms == 0
            && (self.filter.is_empty() || self.filter == other.filter)
    }

    /// The granular filter as search predicates (one AND group per parameter).
    pub fn predicates(&self) -> Vec<Predicate> {
        self.filter
            .iter()
            .map(|(param, value)| {
                let (system, code) = token_parts(value);
                Predicate::Token {
                    param: param.clone(),
                    system,
                    code,
                }
            })
            .collect()
    }

    /// Whether a resource with these index entries passes the granular filter.
    pub fn matches(&self, entries: &IndexEntries) -> bool {
        self.filter.iter().all(|(param, value)| {
            let (system, code) = token_parts(value);
            entries.tokens.iter().any(|t| {
                &t.param == param
                    && (code.is_none() || t.code == code)
                    && match &system {
                        TokenSystem::Any => true,
                        TokenSystem::None => t.system.is_none(),
                        TokenSystem::Is(s) => t.system.as_deref() == Some(s.as_str()),
                    }
            })
        })
    }
}

/// `system|code`, `|code`, `system|` or `code`, as token search reads them.
fn token_parts(value: &str) -> (TokenSystem, Option<String>) {
    match value.split_once('|') {
        None => (TokenSystem::Any, Some(value.to_owned())),
        Some(("", code)) => (TokenSystem::None, Some(code.to_owned())),
        Some((system, "")) => (TokenSystem::Is(system.to_owned()), None),
        Some((system, code)) => (TokenSystem::Is(system.to_owned()), Some(code.to_owned())),
    }
}

/// Parses a space-separated scope string, keeping the resource scopes.
pub fn parse_all(text: &str) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for item in text.split_whitespace() {
        if let Some(scope) = Scope::parse(item)? {
            scopes.push(scope);
        }
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_read_is_read_and_search() {
        let s = Scope::parse("system/Observation.read").unwrap().unwrap();
        assert!(s.has(Perm::Read) && s.has(Perm::Search) && !s.has(Perm::Create));
    }

    #[test]
    fn v2_letters_must_be_in_order() {
        assert!(Scope::parse("system/Observation.rc").is_err());
        let s = Scope::parse("patient/Observation.cu").unwrap().unwrap();
        assert!(s.has(Perm::Create) && s.has(Perm::Update) && !s.has(Perm::Read));
    }

    #[test]
    fn filters_are_token_parameters() {
        let s = Scope::parse("system/Observation.rs?category=vital-signs")
            .unwrap()
            .unwrap();
        assert_eq!(s.filter, vec![("category".into(), "vital-signs".into())]);
        assert!(Scope::parse("system/Observation.rs?date=2020").is_err());
    }

    #[test]
    fn wildcard_does_not_cover_the_audit_trail() {
        let s = Scope::parse("system/*.read").unwrap().unwrap();
        assert!(s.names("Observation") && !s.names("AuditEvent"));
    }

    #[test]
    fn a_wider_scope_covers_a_narrower_one() {
        let wide = Scope::parse("system/Observation.cruds").unwrap().unwrap();
        let narrow = Scope::parse("system/Observation.rs").unwrap().unwrap();
        assert!(wide.covers(&narrow) && !narrow.covers(&wide));
    }

    #[test]
    fn a_wildcard_registration_does_not_cover_the_audit_trail() {
        let wide = Scope::parse("system/*.read").unwrap().unwrap();
        let audit = Scope::parse("system/AuditEvent.read").unwrap().unwrap();
        assert!(!wide.covers(&audit));
        let named = Scope::parse("system/AuditEvent.rs").unwrap().unwrap();
        assert!(named.covers(&Scope::parse("system/AuditEvent.r").unwrap().unwrap()));
    }
}
