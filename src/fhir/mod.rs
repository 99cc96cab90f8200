//! FHIR rules that do not depend on HTTP or storage: resource types, ids, instants, `meta`,
//! validation, and Signaal's own profiles.

pub mod canonical;
pub mod compartment;
pub mod datetime;
pub mod fhirpath_patch;
pub mod id;
pub mod json_format;
pub mod json_patch;
pub mod member;
pub mod meta;
pub mod profile;
pub mod resource_types;
pub mod subset;
pub mod validate;
pub mod xml;
