//! search: `GET [base]/[type]?…` and `POST [base]/[type]/_search` (form body).
//!
//! A `searchset` Bundle in row-key order, paged with keyset cursors so that links stay correct
//! while others write and no result set is kept on the server.

use serde_json::{json, Value};

use crate::app::App;
use crate::error::{FhirError, Issue};
use crate::fhir::compartment::{is_the_patient, patient_params};
use crate::fhir::meta;
use crate::fhir::subset::Subset;
use crate::http::negotiate::prefer_strict;
use crate::http::request::{parse_query, FhirRequest};
use crate::http::response::FhirResponse;
use crate::interaction::bundle::{bundle, information, outcome_entry, warning};
use crate::interaction::include;
use crate::interaction::paging::{self, Page};
use crate::interaction::{check_id, check_type};
use crate::search::params::{parse, Unknown};
use crate::search::query::{Contained, Cursor, Predicate};
use crate::search::result::{self, Total};
use crate::search::sort::{CURSOR_AFTER, CURSOR_BEFORE};
use crate::store::SearchHit;
use crate::terminology::resolver::StoreResolver;

pub async fn search(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
) -> Result<FhirResponse, FhirError> {
    search_in(app, request, rtype, None).await
}

/// Compartment search, `GET [base]/Patient/[id]/[type]?…`: the search, limited to the resources
/// the official Patient CompartmentDefinition puts in that patient's compartment.
pub async fn compartment_search(
    app: &App,
    request: &FhirRequest,
    compartment: &str,
    id: &str,
    rtype: &str,
) -> Result<FhirResponse, FhirError> {
    if compartment != "Patient" {
        check_type(compartment)?;
        return Err(FhirError::invalid(format!(
            "Compartment search is supported for the Patient compartment, not {compartment}"
        )));
    }
    check_id(id)?;
    check_type(rtype)?;
    let mut any_of: Vec<Predicate> = patient_params(rtype)
        .iter()
        .map(|param| Predicate::Reference {
            param: param.clone(),
            target_type: Some("Patient".into()),
            target_id: Some(id.to_owned()),
            url: None,
        })
        .collect();
    if is_the_patient(rtype) {
        any_of.push(Predicate::Id(id.to_owned()));
    }
    if any_of.is_empty() {
        return Err(FhirError::invalid(format!(
            "{rtype} resources are not in the Patient compartment"
        )));
    }
    search_in(
        app,
        request,
        rtype,
        Some((format!("Patient/{id}/{rtype}"), any_of)),
    )
    .await
}

/// A search, optionally within a compartment given as its path and its filter.
async fn search_in(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
    compartment: Option<(String, Vec<Predicate>)>,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    let mut params = request.params.clone();
    if request.method == axum::http::Method::POST {
        // `_search` takes its parameters from a form body as well as the URL.
        let content_type = request.header("content-type").unwrap_or("");
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            return Err(FhirError::UnsupportedMediaType(
                "POST _search takes an application/x-www-form-urlencoded body".into(),
            ));
        }
        let body = std::str::from_utf8(&request.body)
            .map_err(|_| FhirError::invalid("The form body is not UTF-8"))?;
        params.extend(parse_query(body));
    }
    let unknown = if prefer_strict(&request.headers) {
        Unknown::Refuse
    } else {
        Unknown::Ignore
    };
    let mut parsed = parse(
        app.registry(),
        &app.search_budget,
        rtype,
        &params,
        unknown,
        &app.base_url,
    )?;
    crate::search::resolve(&StoreResolver::new(app.store.as_ref()), &mut parsed.query).await?;
    let path = match compartment {
        Some(_) if parsed.query.contained != Contained::False => return Err(FhirError::invalid(
            "Compartment search finds the compartment's own resources: _contained must be false",
        )),
        Some((path, filter)) => {
            parsed.query.filters.push(filter);
            path
        }
        None => rtype.to_owned(),
    };
    let query = &parsed.query;
    let mut hits = if query.count == 0 || parsed.subset == Subset::Count {
        Vec::new()
    } else {
        app.store.search(query).await?
    };
    let more = hits.len() > query.count;
    hits.truncate(query.count);
    let paging_back = query.before.is_some();
    if paging_back {
        hits.reverse();
    }
    // A first page that holds every match counts them itself; otherwise the store counts.
    let whole = !more && query.after.is_none() && query.before.is_none() && query.count > 0;
    let total = if parsed.subset == Subset::Count || parsed.total == Total::Accurate {
        Some(if whole && parsed.subset != Subset::Count {
            hits.len() as u64
        } else {
            app.store.count(query).await?
        })
    } else {
        None
    };
    let kept: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != CURSOR_AFTER && k != CURSOR_BEFORE)
        .cloned()
        .collect();
    // The links say the page size used, which a capped `_count` is not.
    let kept = result::with_count_used(&kept, query.count);
    let page = Page {
        first: hits.first().map(cursor),
        last: hits.last().map(cursor),
        more,
        backwards: paging_back,
        forwards: query.after.is_some(),
    };
    let links = paging::links(&app.url(&path), &kept, &page, CURSOR_AFTER, CURSOR_BEFORE);
    let included = include::included(app, &parsed.includes, &hits).await?;
    let entry = |hit: &SearchHit, mode: &str| {
        let url = app.url(&format!("{}/{}", hit.version.rtype, hit.version.id));
        let (full_url, resource) = match hit.contained.filter(|p| *p >= 0) {
            Some(position) => contained_resource(&hit.version, position, url)?,
            None => (url, meta::stamp(&hit.version)?),
        };
        Some(json!({
            "fullUrl": full_url,
            "resource": resource,
            "search": {"mode": mode},
        }))
    };
    let chosen = &parsed.subset;
    let subset = |included: bool| {
        move |mut e: Value| {
            let resource = e["resource"].take();
            e["resource"] = chosen.apply(resource, included);
            e
        }
    };
    let mut entries: Vec<Value> = hits
        .iter()
        .filter_map(|hit| entry(hit, "match"))
        .map(subset(false))
        .collect();
    entries.extend(
        included
            .hits
            .iter()
            .filter_map(|hit| entry(hit, "include"))
            .map(subset(true)),
    );
    let mut issues: Vec<Issue> = parsed
        .ignored
        .iter()
        .map(|reason| warning("not-supported", format!("Ignored {reason}")))
        .collect();
    if included.truncated {
        issues.push(warning(
            "not-supported",
            format!(
                "Only the first {} included resources are on this page",
                include::MAX_INCLUDED
            ),
        ));
    }
    if included.iterations_exhausted {
        issues.push(warning("not-supported", format!(
            ":iterate stopped after {} rounds (the server's max-include-iterations limit) before it found every resource: more may be included",
            app.search_budget.max_iterations
        )));
    }
    issues.extend(parsed.count.and_then(|c| c.note()).map(information));
    entries.extend(outcome_entry(issues));
    let bundle = bundle("searchset", total, links, entries);
    Ok(FhirResponse::ok(bundle))
}

/// A contained resource returned on its own (`_containedType=contained`): the one at
/// `position` in the container's `contained`, with the container's URL, `#` and its local id
/// as its fullUrl (search page, "Contained Resources").
fn contained_resource(
    container: &crate::store::Version,
    position: i64,
    container_url: String,
) -> Option<(String, Value)> {
    let mut content: Value = serde_json::from_str(container.content.as_deref()?).ok()?;
    let resource = content
        .get_mut("contained")?
        .get_mut(usize::try_from(position).ok()?)?
        .take();
    let id = resource.get("id").and_then(Value::as_str)?;
    Some((format!("{container_url}#{id}"), resource))
}

/// The paging cursor of a hit: its sort key values and row key.
fn cursor(hit: &SearchHit) -> String {
    Cursor {
        keys: hit.keys.clone(),
        rid: hit.rid,
    }
    .encode()
}
