//! The targets of a resource's references, found for the engine's check against their
//! elements' profiles (`validation::target_profile`, decision 0052). A target is looked for in
//! the Bundle the resource came in (its `fullUrl`, a `urn:uuid:`, a PUT entry's `Type/id`: the
//! resource as written there), then on this server: a relative `Type/id` or
//! `Type/id/_history/vid`, or an absolute URL under this server's base. The current versions
//! are read in one statement, through the request's store: the authorization guard leaves out
//! what the client may not read, so such a target is "not checked" exactly like a missing one
//! and the answer says nothing about it. Anything else (another server's URL, a `urn:` the
//! Bundle lacks, a conditional or contained reference) is not checked, and said so.

use std::collections::HashMap;

use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::{id, meta, resource_types};
use crate::interaction::bundle_entry::{at_entry, Entry, Rewrite};
use crate::store::StoreError;
use crate::validation::reference::is_absolute;
use crate::validation::target_profile::{Target, TargetCheck, MAX_CHECKS};
use crate::validation::Outcome;

/// Why a target on this server was not checked: missing and unreadable alike.
const NOT_HERE: &str = "the target is not on this server, or this request may not read it";

/// The checks of one resource, and the `fullUrl` of its Bundle entry (relative references in
/// it are relative to that base, bundle.html §2.36.4.1).
pub struct Source<'a> {
    pub checks: &'a [TargetCheck],
    pub full_url: Option<&'a str>,
}

/// The resources of a Bundle by the URLs that name them, as written.
pub struct InBundle<'b> {
    by_url: HashMap<String, &'b Value>,
    /// Each entry's `fullUrl`, for the references of a Bundle validated as a whole.
    full_urls: Vec<Option<&'b str>>,
}

impl<'b> InBundle<'b> {
    pub fn of(entries: &'b [Value]) -> InBundle<'b> {
        let mut by_url = HashMap::new();
        let mut full_urls = Vec::with_capacity(entries.len());
        for entry in entries {
            let full_url = entry.get("fullUrl").and_then(Value::as_str);
            full_urls.push(full_url);
            let Some(resource) = entry.get("resource") else {
                continue;
            };
            if let Some(url) = full_url {
                by_url.insert(url.to_owned(), resource);
            }
            // A PUT entry names its resource by `Type/id`.
            let method = entry.pointer("/request/method").and_then(Value::as_str);
            if let (Some("PUT"), Some(url)) = (method, entry.pointer("/request/url")) {
                if let Some(url) = url.as_str().filter(|u| !u.contains('?')) {
                    by_url.insert(url.trim_start_matches('/').to_owned(), resource);
                }
            }
        }
        InBundle { by_url, full_urls }
    }

    /// The `fullUrl` of the entry holding a check made while the whole Bundle was validated
    /// (`Bundle.entry[3].resource.subject`).
    fn entry_full_url(&self, at: &str) -> Option<&'b str> {
        let rest = at.strip_prefix("Bundle.entry[")?;
        let index: usize = rest.split(']').next()?.parse().ok()?;
        self.full_urls.get(index).copied().flatten()
    }

    /// The resource `reference` names, made in the entry whose fullUrl is `from`.
    fn find(&self, reference: &str, from: Option<&str>, base: &str) -> Option<&'b Value> {
        if let Some(found) = self.by_url.get(reference) {
            return Some(found);
        }
        if is_absolute(reference) {
            let relative = reference.strip_prefix(base)?.strip_prefix('/')?;
            return self.by_url.get(relative).copied();
        }
        let bases = from
            .and_then(Rewrite::base_of)
            .into_iter()
            .chain([base.to_owned()]);
        for b in bases {
            if let Some(found) = self.by_url.get(&format!("{b}/{reference}")) {
                return Some(found);
            }
        }
        None
    }
}

/// Where a check's target is.
enum Place<'b> {
    Bundle(&'b Value),
    Current(String, String),
    Version(String, String, i64),
    NotChecked(String),
}

/// `(type, id, version)` of a reference to this server: relative, or absolute under `base`.
fn on_this_server<'r>(reference: &'r str, base: &str) -> Option<(&'r str, &'r str, Option<i64>)> {
    let relative = if is_absolute(reference) {
        reference.strip_prefix(base)?.strip_prefix('/')?
    } else {
        reference
    };
    let segments: Vec<&str> = relative.split('/').collect();
    let (t, i, v) = match segments.as_slice() {
        [t, i] => (*t, *i, None),
        [t, i, "_history", v] => (*t, *i, Some(id::parse_version(v)?)),
        _ => return None,
    };
    (resource_types::is_resource_type(t) && id::is_valid(i)).then_some((t, i, v))
}

/// Why a reference that is not on this server is not checked.
fn elsewhere(reference: &str) -> String {
    if reference.starts_with('#') {
        "a contained target is not checked against profiles".into()
    } else if reference.contains('?') {
        "a conditional reference's target is not checked against profiles".into()
    } else {
        "the target is not on this server".into()
    }
}

/// The checks of `sources`, their targets found in `bundle` or read from the store (current
/// versions in one statement): one Outcome per source, with an error at each reference whose
/// target conforms to none of its profiles and information for each not checked. At most
/// [`MAX_CHECKS`] references are checked in all.
pub async fn check(
    app: &App,
    sources: &[Source<'_>],
    bundle: Option<&InBundle<'_>>,
) -> Result<Vec<Outcome>, FhirError> {
    let base = app.base_url.as_str();
    let mut places: Vec<Vec<Place>> = Vec::with_capacity(sources.len());
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut counted = 0;
    for source in sources {
        let mut of_source = Vec::with_capacity(source.checks.len());
        for c in source.checks {
            counted += 1;
            let r = c.reference.as_str();
            let from = source
                .full_url
                .or_else(|| bundle.and_then(|b| b.entry_full_url(&c.at)));
            let place = if counted > MAX_CHECKS {
                Place::NotChecked(format!(
                    "more than {MAX_CHECKS} references of this request name profiles, and only \
                     the first {MAX_CHECKS} are checked"
                ))
            } else if let Some(found) = bundle.and_then(|b| b.find(r, from, base)) {
                Place::Bundle(found)
            } else if let Some((t, i, v)) = on_this_server(r, base) {
                match v {
                    Some(v) => Place::Version(t.to_owned(), i.to_owned(), v),
                    None => {
                        keys.push((t.to_owned(), i.to_owned()));
                        Place::Current(t.to_owned(), i.to_owned())
                    }
                }
            } else {
                Place::NotChecked(elsewhere(r))
            };
            of_source.push(place);
        }
        places.push(of_source);
    }
    keys.sort();
    keys.dedup();
    // The current versions in one statement (under the request's time budget, decision 0026);
    // what the client may not read is left out by the guard.
    let mut current: HashMap<(String, String), Value> = HashMap::new();
    if !keys.is_empty() {
        for hit in app.store.read_current(&keys).await? {
            if let Some(resource) = meta::stamp(&hit.version) {
                current.insert((hit.version.rtype, hit.version.id), resource);
            }
        }
    }
    let mut versions: HashMap<(String, String, i64), Value> = HashMap::new();
    for place in places.iter().flatten() {
        let Place::Version(t, i, v) = place else {
            continue;
        };
        let key = (t.clone(), i.clone(), *v);
        if versions.contains_key(&key) {
            continue;
        }
        match app.store.vread(t, i, *v).await {
            Ok(Some(version)) => {
                if let Some(resource) = meta::stamp(&version) {
                    versions.insert(key, resource);
                }
            }
            Ok(None) | Err(StoreError::Forbidden(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut outcomes = Vec::with_capacity(sources.len());
    for (source, places) in sources.iter().zip(&places) {
        let by_check: HashMap<&TargetCheck, &Place> = source.checks.iter().zip(places).collect();
        let find = |c: &TargetCheck| -> Target {
            let found = match by_check.get(c) {
                Some(Place::Bundle(found)) => Some(*found),
                Some(Place::Current(t, i)) => current.get(&(t.clone(), i.clone())),
                Some(Place::Version(t, i, v)) => versions.get(&(t.clone(), i.clone(), *v)),
                Some(Place::NotChecked(why)) => return Target::NotChecked(why.clone()),
                None => None,
            };
            match found {
                Some(found) => Target::Found(found),
                None => Target::NotChecked(NOT_HERE.into()),
            }
        };
        let mut out = Outcome::default();
        app.validation.check_targets(source.checks, &find, &mut out);
        outcomes.push(out);
    }
    Ok(outcomes)
}

/// A write's resource: validated (400 with every issue), then its references' targets against
/// their profiles (422: the resource is valid, its targets do not fit the profiles).
pub async fn check_write(app: &App, resource: &Value, rtype: &str) -> Result<(), FhirError> {
    let checks = app.validation.check_write(resource, rtype)?;
    if checks.0.is_empty() {
        return Ok(());
    }
    let source = Source {
        checks: &checks.0,
        full_url: None,
    };
    let out = check(app, &[source], None).await?;
    out.into_iter().try_for_each(refuse)
}

/// The entries of a batch or transaction Bundle (`raw`), their targets found in the Bundle as
/// written or on this server, all in one go: per entry, `Ok` or its 422 (labelled).
pub async fn check_entries(
    app: &App,
    entries: &[&Entry],
    raw: &[Value],
) -> Result<Vec<Result<(), FhirError>>, FhirError> {
    if entries.iter().all(|e| e.targets.is_empty()) {
        return Ok(entries.iter().map(|_| Ok(())).collect());
    }
    let bundle = InBundle::of(raw);
    let sources: Vec<Source> = entries
        .iter()
        .map(|e| Source {
            checks: &e.targets,
            full_url: e.full_url.as_deref(),
        })
        .collect();
    let outcomes = check(app, &sources, Some(&bundle)).await?;
    Ok(entries
        .iter()
        .zip(outcomes)
        .map(|(entry, out)| refuse(out).map_err(|e| at_entry(e, &entry.label())))
        .collect())
}

/// 422 with the errors when the check found any (what was not checked is for `$validate`).
fn refuse(out: Outcome) -> Result<(), FhirError> {
    if !out.has_errors() {
        return Ok(());
    }
    let issues = out
        .into_issues()
        .into_iter()
        .filter(|i| i.severity != "information")
        .collect();
    Err(FhirError::Unprocessable(issues))
}

#[cfg(test)]
mod tests {
    use super::on_this_server;

    const BASE: &str = "http://127.0.0.1:8080/fhir";

    #[test]
    fn relative_and_own_absolute_references_are_on_this_server() {
        assert_eq!(
            on_this_server("Patient/1", BASE),
            Some(("Patient", "1", None))
        );
        assert_eq!(
            on_this_server("Patient/1/_history/3", BASE),
            Some(("Patient", "1", Some(3)))
        );
        assert_eq!(
            on_this_server("http://127.0.0.1:8080/fhir/Patient/a.b", BASE),
            Some(("Patient", "a.b", None))
        );
    }

    #[test]
    fn other_references_are_not_on_this_server() {
        assert_eq!(
            on_this_server("http://elsewhere.example/fhir/Patient/1", BASE),
            None
        );
        assert_eq!(
            on_this_server("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", BASE),
            None
        );
        assert_eq!(on_this_server("Patient?identifier=x", BASE), None);
        assert_eq!(on_this_server("#p1", BASE), None);
        assert_eq!(on_this_server("Chicken/1", BASE), None);
        assert_eq!(on_this_server("Patient/1/_history/x", BASE), None);
    }
}
