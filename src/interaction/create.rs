//! create: `POST [base]/[type]`, and conditional create with `If-None-Exist`.

use axum::http::StatusCode;

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::{id::new_id, validate::validate};
use crate::http::request::{parse_query, FhirRequest};
use crate::http::response::FhirResponse;
use crate::interaction::{check_type, retry, version};
use crate::search::params::{criteria, criteria_key};
use crate::store::{Method, Version};

pub async fn create(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    let resource = request.json_body()?;
    validate(&resource, rtype)?;
    // The server assigns the id; one in the body is ignored (http page, create).
    let id = new_id();
    let condition = match request.header("if-none-exist") {
        Some(value) => Some(parse_query(
            value
                .trim_start_matches(&format!("{rtype}?"))
                .trim_start_matches('?'),
        )),
        None => None,
    };
    let outcome = retry(|| async {
        let mut tx = app.store.begin().await?;
        if let Some(params) = &condition {
            let query = criteria(rtype, params, &app.base_url)?;
            tx.lock_key(&criteria_key(rtype, params)).await?;
            let hits = tx.search(&query).await?;
            match hits.len() {
                0 => {}
                1 => return Ok(Created::Existing(hits.into_iter().next().map(|h| h.version).unwrap())),
                _ => {
                    return Err(FhirError::PreconditionFailed(format!(
                        "If-None-Exist matched more than one {rtype}: the criteria are not selective enough"
                    )))
                }
            }
        }
        let written = version::write(&mut *tx, rtype, &id, None, Method::Post, Some(resource.clone())).await?;
        tx.commit().await?;
        Ok(Created::New(written))
    })
    .await?;
    match outcome {
        Created::New(written) => Ok(version::respond(&written, StatusCode::CREATED)?
            .with_location(version::location(app, &written))
            .written(format!("Created {rtype}/{id} (version 1)"))),
        // Conditional create found the resource: nothing is written (http page: 200 OK).
        Created::Existing(existing) => Ok(version::respond(&existing, StatusCode::OK)?.written(
            format!(
                "{rtype}/{} already matches If-None-Exist; nothing created",
                existing.id
            ),
        )),
    }
}

enum Created {
    New(Version),
    Existing(Version),
}
