//! `_include` and `_revinclude` (search page, "Including other resources in result"): which
//! references of the matches (or to them) bring other resources into the result. The
//! interaction `interaction/include.rs` follows them.

use crate::error::FhirError;
use crate::fhir::resource_types;
use crate::search::definitions::{ParamType, Registry};

/// An `_include` (`rev: false`) or `_revinclude` (`rev: true`) of `source:param[:target]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub rev: bool,
    /// `:iterate` (R4; `:recurse` in earlier versions): also applies to included resources.
    pub iterate: bool,
    pub source: String,
    /// `None` for `*`: every reference parameter of the source type.
    pub param: Option<String>,
    pub target: Option<String>,
}

/// Parses `name=value`, `name` being `_include` or `_revinclude` with an optional modifier and
/// `value` `Type:param[:target]` or `*`, in a search of `rtype`.
pub fn include(
    registry: &Registry,
    name: &str,
    value: &str,
    rtype: &str,
) -> Result<Include, FhirError> {
    let (base, modifier) = name.split_once(':').unwrap_or((name, ""));
    let iterate = match modifier {
        "" => false,
        "iterate" | "recurse" => true,
        other => {
            return Err(FhirError::invalid(format!(
                "{base}:{other} is not a valid modifier"
            )))
        }
    };
    let rev = base == "_revinclude";
    if value == "*" {
        let source = if rev {
            "*".to_owned()
        } else {
            rtype.to_owned()
        };
        return Ok(Include {
            rev,
            iterate,
            source,
            param: None,
            target: None,
        });
    }
    let mut parts = value.split(':');
    let source = parts.next().unwrap_or("");
    let param = parts.next().unwrap_or("");
    let target = parts.next();
    if !resource_types::is_resource_type(source) || parts.next().is_some() {
        return Err(FhirError::invalid(format!(
            "{base}={value}: expected Type:parameter[:targetType]"
        )));
    }
    let param = if param == "*" {
        None
    } else {
        match registry.get(source, param) {
            Some(p) if p.kind == ParamType::Reference => Some(param.to_owned()),
            _ => {
                return Err(FhirError::invalid(format!(
                    "{base}={value}: {source} has no reference search parameter '{param}'"
                )))
            }
        }
    };
    if let Some(t) = target {
        if !resource_types::is_resource_type(t) {
            return Err(FhirError::invalid(format!(
                "{base}={value}: '{t}' is not a resource type"
            )));
        }
    }
    Ok(Include {
        rev,
        iterate,
        source: source.to_owned(),
        param,
        target: target.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_names_a_reference_parameter_and_optionally_a_target() {
        assert_eq!(
            include(
                &Registry::official(),
                "_include:iterate",
                "Observation:subject:Patient",
                "Observation"
            )
            .unwrap(),
            Include {
                rev: false,
                iterate: true,
                source: "Observation".into(),
                param: Some("subject".into()),
                target: Some("Patient".into())
            }
        );
        assert!(include(
            &Registry::official(),
            "_include",
            "Observation:status",
            "Observation"
        )
        .is_err());
        assert!(include(
            &Registry::official(),
            "_include",
            "Observation:subject:Nothing",
            "Observation"
        )
        .is_err());
        assert!(include(
            &Registry::official(),
            "_include:deep",
            "Observation:subject",
            "Observation"
        )
        .is_err());
    }

    #[test]
    fn a_star_includes_every_reference() {
        let all = include(&Registry::official(), "_revinclude", "*", "Patient").unwrap();
        assert_eq!((all.rev, all.source.as_str(), all.param), (true, "*", None));
        let own = include(&Registry::official(), "_include", "*", "Patient").unwrap();
        assert_eq!(own.source, "Patient");
    }
}
