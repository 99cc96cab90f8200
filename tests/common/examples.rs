//! HL7's official R4 examples package (`FHIR_R4_PACKAGE`, by default
//! `../shared/fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz` next to the crate), and how an example is
//! compared with what the server gives back.

use std::io::Read;

use serde_json::Value;

/// One example of the package: its file name, the bytes as published, and their JSON.
pub struct PackageFile {
    pub file: String,
    pub bytes: Vec<u8>,
    pub json: Value,
}

/// Every resource of the package's top folder, or `None` when the package is missing and
/// fixtures are not required (see [`super::shared_fixture`]).
pub fn official_examples() -> Option<Vec<PackageFile>> {
    let path = super::shared_fixture(
        "FHIR_R4_PACKAGE",
        "fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz",
        "get it with `npm pack hl7.fhir.r4.examples@4.0.1` (or from \
         https://packages.fhir.org/hl7.fhir.r4.examples/4.0.1)",
    )?;
    let file = std::fs::File::open(&path).expect("the package can be opened");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut examples = Vec::new();
    for entry in archive.entries().expect("the package is a tar.gz") {
        let mut entry = entry.expect("a readable package entry");
        let name = entry
            .path()
            .expect("an entry path")
            .to_string_lossy()
            .into_owned();
        let Some(file) = name.strip_prefix("package/") else {
            continue;
        };
        if file.contains('/')
            || !file.ends_with(".json")
            || file.starts_with('.')
            || file == "package.json"
        {
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .expect("a readable package entry");
        let json: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{name} in the package is not JSON: {e}"));
        if json.get("resourceType").is_some() {
            examples.push(PackageFile {
                file: file.to_owned(),
                bytes,
                json,
            });
        }
    }
    assert!(
        examples.len() > 1000,
        "{} holds only {} examples: not the R4 examples package?",
        path.display(),
        examples.len()
    );
    Some(examples)
}

/// A resource as compared with what was sent: without what the server owns.
///
/// - `meta.versionId` and `meta.lastUpdated` (R4 resource.html#Meta), and a `meta` left empty
///   by their removal;
/// - a Subscription's `status` and `error`: the server moves a requested subscription to
///   `active` or `error` once it tried the channel (R4 subscription.html), at a moment of its
///   own, so a read may see either.
pub fn comparable(resource: &Value) -> Value {
    let mut resource = resource.clone();
    let Some(object) = resource.as_object_mut() else {
        return resource;
    };
    if let Some(Value::Object(meta)) = object.get_mut("meta") {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            object.remove("meta");
        }
    }
    if object.get("resourceType").and_then(Value::as_str) == Some("Subscription") {
        object.remove("status");
        object.remove("error");
    }
    resource
}
