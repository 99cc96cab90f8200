//! FHIR packages made in a test: an NPM-format `.tgz` as `--package` reads it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Writes `DIR/NAME.tgz`: `package/package.json` (name, version 0.3.1, FHIR 4.0.1,
/// `dependencies`) and one file per resource.
pub fn write_package(dir: &Path, name: &str, dependencies: Value, resources: &[Value]) -> PathBuf {
    let file = dir.join(format!("{name}.tgz"));
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&file).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    let mut add = |path: &str, value: &Value| {
        let bytes = serde_json::to_vec(value).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes.as_slice())
            .unwrap();
    };
    add(
        "package/package.json",
        &json!({"name": name, "version": "0.3.1", "fhirVersions": ["4.0.1"],
            "dependencies": dependencies}),
    );
    for (i, r) in resources.iter().enumerate() {
        add(&format!("package/resource-{i}.json"), r);
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
    file
}
