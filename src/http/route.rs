//! Maps method and path below the FHIR base to an interaction (http page, "RESTful API").

use axum::http::Method;

use crate::app::App;
use crate::error::FhirError;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::history::Scope;
use crate::interaction::{
    async_job, audit_event, bulk_status, capabilities, create, delete, evaluate_measure,
    everything, export, history, import, lastn, patch, read, reindex, scoring_coverage, search,
    transaction, update, validate, vread, worklist,
};
use crate::subscription;

pub async fn dispatch(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let method = &request.method;
    let not_allowed = |allow: &'static str| FhirError::MethodNotAllowed {
        method: method.to_string(),
        path: app
            .url(&segments.join("/"))
            .trim_end_matches('/')
            .to_owned(),
        allow,
    };
    match segments.as_slice() {
        // The base: a batch or transaction, or (for a client that opens it) the
        // CapabilityStatement; a browser gets a page instead (`http::home`).
        [] => match *method {
            Method::POST => transaction::bundle(app, request).await,
            Method::GET => capabilities::capabilities(app, request).await,
            _ => Err(not_allowed("GET, POST")),
        },
        ["metadata"] => match *method {
            Method::GET => capabilities::capabilities(app, request).await,
            _ => Err(not_allowed("GET")),
        },
        ["_history"] => match *method {
            Method::GET => history::history(app, request, Scope::System).await,
            _ => Err(not_allowed("GET")),
        },
        [async_job::STATUS_PATH, id] => match *method {
            Method::GET | Method::DELETE => reindex::job_status(app, request, id).await,
            _ => Err(not_allowed("GET, DELETE")),
        },
        [export::STATUS_PATH, id] => match *method {
            Method::GET | Method::DELETE => {
                bulk_status::status(app, request, &app.jobs.exports, id).await
            }
            _ => Err(not_allowed("GET, DELETE")),
        },
        [export::STATUS_PATH, id, file] => match *method {
            Method::GET => bulk_status::file(app, request, &app.jobs.exports, id, file).await,
            _ => Err(not_allowed("GET")),
        },
        [import::STATUS_PATH, id] => match *method {
            Method::GET | Method::DELETE => {
                bulk_status::status(app, request, &app.jobs.imports, id).await
            }
            _ => Err(not_allowed("GET, DELETE")),
        },
        [import::STATUS_PATH, id, file] => match *method {
            Method::GET => bulk_status::file(app, request, &app.jobs.imports, id, file).await,
            _ => Err(not_allowed("GET")),
        },
        ["$import"] => match *method {
            Method::POST => import::kick_off(app, request).await,
            _ => Err(not_allowed("POST")),
        },
        ["$export"] => match *method {
            Method::GET | Method::POST => {
                export::kick_off(app, request, export::Level::System).await
            }
            _ => Err(not_allowed("GET, POST")),
        },
        ["Patient", "$export"] => match *method {
            Method::GET | Method::POST => {
                export::kick_off(app, request, export::Level::Patient).await
            }
            _ => Err(not_allowed("GET, POST")),
        },
        ["Group", id, "$export"] => match *method {
            Method::GET | Method::POST => {
                export::kick_off(app, request, export::Level::Group(id)).await
            }
            _ => Err(not_allowed("GET, POST")),
        },
        ["$reindex"] => match *method {
            Method::POST => reindex::system(app, request).await,
            _ => Err(not_allowed("POST")),
        },
        ["$scoring-coverage"] => match *method {
            Method::GET => scoring_coverage::scoring_coverage(app).await,
            _ => Err(not_allowed("GET")),
        },
        [op, ..] if op.starts_with('$') => {
            Err(FhirError::NotFound(format!("Unknown operation {op}")))
        }
        // The audit trail is served from the audit log, and written by the server only.
        ["AuditEvent"] => match *method {
            Method::GET => audit_event::search(app, request).await,
            Method::POST | Method::PUT | Method::DELETE | Method::PATCH => {
                Err(audit_event::refuse_write())
            }
            _ => Err(not_allowed("GET")),
        },
        ["AuditEvent", "_search"] => match *method {
            Method::POST => audit_event::search(app, request).await,
            _ => Err(not_allowed("POST")),
        },
        ["AuditEvent", id] if !id.starts_with('$') && *id != "_history" => match *method {
            Method::GET => audit_event::read(app, id).await,
            Method::PUT | Method::DELETE | Method::PATCH => Err(audit_event::refuse_write()),
            _ => Err(not_allowed("GET")),
        },
        [rtype] => match *method {
            Method::GET => search::search(app, request, rtype).await,
            Method::POST => create::create(app, request, rtype).await,
            Method::PUT => update::conditional_update(app, request, rtype).await,
            Method::DELETE => delete::conditional_delete(app, request, rtype).await,
            Method::PATCH => patch::conditional_patch(app, request, rtype).await,
            _ => Err(not_allowed("GET, POST, PUT, DELETE, PATCH")),
        },
        [rtype, "_search"] => match *method {
            Method::POST => search::search(app, request, rtype).await,
            _ => Err(not_allowed("POST")),
        },
        [rtype, "_history"] => match *method {
            Method::GET => history::history(app, request, Scope::Type(rtype)).await,
            _ => Err(not_allowed("GET")),
        },
        ["Observation", "$lastn"] => match *method {
            Method::GET => lastn::lastn(app, request).await,
            _ => Err(not_allowed("GET")),
        },
        [rtype, "$validate"] => match *method {
            Method::POST => validate::validate(app, request, rtype, None).await,
            _ => Err(not_allowed("POST")),
        },
        [rtype, id, "$validate"] => match *method {
            Method::GET | Method::POST => validate::validate(app, request, rtype, Some(id)).await,
            _ => Err(not_allowed("GET, POST")),
        },
        [rtype, "$reindex"] => match *method {
            Method::POST => reindex::type_level(app, request, rtype).await,
            _ => Err(not_allowed("POST")),
        },
        ["Patient", "$everything"] => match *method {
            Method::GET => everything::type_level(app, request).await,
            _ => Err(not_allowed("GET")),
        },
        ["Patient", id, "$everything"] => match *method {
            Method::GET => everything::everything(app, request, id).await,
            _ => Err(not_allowed("GET")),
        },
        ["Subscription", id, "$status"] => match *method {
            Method::GET | Method::POST => subscription::operations::status(app, id).await,
            _ => Err(not_allowed("GET, POST")),
        },
        ["Subscription", id, "$events"] => match *method {
            Method::GET | Method::POST => subscription::operations::events(app, request, id).await,
            _ => Err(not_allowed("GET, POST")),
        },
        ["Subscription", id, "$get-ws-binding-token"] => match *method {
            Method::GET | Method::POST => {
                subscription::operations::get_ws_binding_token(app, id).await
            }
            _ => Err(not_allowed("GET, POST")),
        },
        ["Practitioner", id, "$worklist"] => match *method {
            Method::GET => worklist::worklist(app, id).await,
            _ => Err(not_allowed("GET")),
        },
        ["Measure", id, "$evaluate-measure"] => match *method {
            Method::GET | Method::POST => {
                evaluate_measure::evaluate_measure(app, request, id).await
            }
            _ => Err(not_allowed("GET, POST")),
        },
        [rtype, id] if !id.starts_with('$') => match *method {
            Method::GET => read::read(app, request, rtype, id).await,
            Method::PUT => update::update(app, request, rtype, id).await,
            Method::DELETE => delete::delete(app, request, rtype, id).await,
            Method::PATCH => patch::patch(app, request, rtype, id).await,
            _ => Err(not_allowed("GET, PUT, DELETE, PATCH")),
        },
        [compartment, id, rtype] if *rtype != "_history" && !rtype.starts_with('$') => {
            match *method {
                Method::GET => {
                    search::compartment_search(app, request, compartment, id, rtype).await
                }
                _ => Err(not_allowed("GET")),
            }
        }
        [rtype, id, "_history"] => match *method {
            Method::GET => history::history(app, request, Scope::Instance(rtype, id)).await,
            _ => Err(not_allowed("GET")),
        },
        [rtype, id, "_history", vid] => match *method {
            Method::GET => vread::vread(app, rtype, id, vid).await,
            _ => Err(not_allowed("GET")),
        },
        _ => Err(FhirError::NotFound(format!(
            "No FHIR interaction at {}",
            app.url(&segments.join("/"))
        ))),
    }
}
