//! `$validate` (resource-operation-validate): `POST [base]/[type]/$validate` and
//! `[base]/[type]/[id]/$validate` (also GET at instance level, which validates the stored
//! resource). The body is the resource, or a Parameters with `resource`, `mode`
//! (`create`, `update`, `delete`, `profile`) and `profile`; `mode` and `profile` may also be
//! query parameters. The answer is always an OperationOutcome with every issue the engine
//! found (200: the operation ran, whatever the resource's issues); "All OK" when there is none.
//! A `profile` the server does not know is a 400: the spec says the server SHALL return an
//! error when it cannot validate against the nominated profile.

use serde_json::Value;

use crate::app::App;
use crate::error::{outcome, FhirError, Issue};
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::interaction::target_profile::{self, InBundle, Source};
use crate::interaction::{check_id, check_type};

/// What the client asked for: the resource (if sent), the mode and the profile.
struct Input {
    resource: Option<Value>,
    mode: Option<String>,
    profile: Option<String>,
}

fn input(request: &FhirRequest) -> Result<Input, FhirError> {
    let mut input = Input {
        resource: None,
        mode: request.single_param("mode")?.map(str::to_owned),
        profile: request.single_param("profile")?.map(str::to_owned),
    };
    if request.body.is_empty() {
        return Ok(input);
    }
    let body = request.json_body()?;
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        input.resource = Some(body);
        return Ok(input);
    }
    for parameter in body
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match parameter.get("name").and_then(Value::as_str) {
            Some("resource") => input.resource = parameter.get("resource").cloned(),
            Some("mode") => {
                input.mode = parameter
                    .get("valueCode")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }
            Some("profile") => {
                input.profile = ["valueUri", "valueCanonical"]
                    .iter()
                    .find_map(|k| parameter.get(*k))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }
            _ => {}
        }
    }
    Ok(input)
}

/// `[type]/$validate` (`id` none) and `[type]/[id]/$validate`.
pub async fn validate(
    app: &App,
    request: &FhirRequest,
    rtype: &str,
    id: Option<&str>,
) -> Result<FhirResponse, FhirError> {
    check_type(rtype)?;
    if let Some(id) = id {
        check_id(id)?;
    }
    let input = input(request)?;
    let mode = input.mode.as_deref().unwrap_or("profile");
    if !matches!(mode, "create" | "update" | "delete" | "profile") {
        return Err(FhirError::invalid(format!(
            "Unknown mode '{mode}': expected create, update, delete or profile"
        )));
    }
    if let Some(profile) = &input.profile {
        if app.validation.defs().get(profile).is_none() {
            return Err(FhirError::invalid(format!(
                "The profile {profile} is not known to this server, so it cannot validate against it"
            )));
        }
    }
    let stored = match id {
        Some(id) => app
            .store
            .read(rtype, id)
            .await?
            .filter(|v| !v.deleted())
            .and_then(|v| v.content)
            .and_then(|text| serde_json::from_str::<Value>(&text).ok()),
        None => None,
    };
    let mut issues: Vec<Issue> = Vec::new();
    if mode == "delete" {
        // Nothing in the resource stops a delete on this server: it must exist.
        let Some(id) = id else {
            return Err(FhirError::invalid(
                "mode=delete needs an instance: [type]/[id]/$validate",
            ));
        };
        if stored.is_none() {
            return Err(FhirError::NotFound(format!("{rtype}/{id} is not known")));
        }
    } else {
        let resource = match (input.resource, stored) {
            (Some(resource), _) => resource,
            (None, Some(stored)) if mode == "profile" => stored,
            (None, None) if id.is_some() => {
                return Err(FhirError::NotFound(format!(
                    "{rtype}/{} is not known",
                    id.unwrap_or_default()
                )))
            }
            _ => {
                return Err(FhirError::invalid(
                    "There is no resource to validate: send it as the body or as the Parameters' resource",
                ))
            }
        };
        if mode == "update" {
            let body_id = resource.get("id").and_then(Value::as_str);
            match (body_id, id) {
                (None, _) => issues.push(
                    Issue::error("required", "An update needs the resource's id")
                        .at(format!("{rtype}.id")),
                ),
                (Some(b), Some(u)) if b != u => issues.push(
                    Issue::error(
                        "invalid",
                        format!("The resource's id '{b}' is not the id '{u}' of the URL"),
                    )
                    .at(format!("{rtype}.id")),
                ),
                _ => {}
            }
        }
        let profiles: Vec<String> = input.profile.into_iter().collect();
        let mut out = app.validation.validate(&resource, rtype, &profiles);
        // The targets of references that name profiles: in the Bundle itself when the
        // resource is one, else on this server.
        let checks = std::mem::take(&mut out.targets);
        issues.extend(out.into_issues());
        if !checks.is_empty() {
            let entries: &[Value] = match resource.get("entry").and_then(Value::as_array) {
                Some(entries) if rtype == "Bundle" => entries,
                _ => &[],
            };
            let bundle = InBundle::of(entries);
            let source = Source {
                checks: &checks,
                full_url: None,
            };
            for out in target_profile::check(app, &[source], Some(&bundle)).await? {
                issues.extend(out.into_issues());
            }
        }
    }
    if issues.is_empty() {
        issues.push(Issue {
            severity: "information",
            code: "informational",
            diagnostics: "All OK".to_owned(),
            expression: None,
        });
    }
    Ok(FhirResponse::ok(outcome(&issues)))
}
