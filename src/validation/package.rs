//! FHIR packages (the NPM format of the FHIR package specification): a `.tgz` whose
//! `package/package.json` names the package, its version and its `dependencies`, and whose
//! `package/*.json` files are the resources. Loaded at start (`--package FILE`, repeatable, and
//! every `.tgz` of `--package-dir`); the StructureDefinitions, ValueSets and CodeSystems join the
//! core definitions, and the Questionnaires are what QuestionnaireResponses are checked against. Every dependency must be loaded too, except the core R4 package, which is
//! built in: a missing one stops the start with a message naming it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The core packages whose content the server has built in.
const BUILT_IN: [&str; 3] = [
    "hl7.fhir.r4.core",
    "hl7.fhir.r4.examples",
    "hl7.fhir.r4.expansions",
];

/// The resource types a package contributes to validation.
/// (An ImplementationGuide's `global` profiles apply to every resource of their type.)
const KEPT: [&str; 5] = [
    "StructureDefinition",
    "ValueSet",
    "CodeSystem",
    "ImplementationGuide",
    "Questionnaire",
];

/// The largest file read from a package (a package's biggest resources are a few MB).
const MAX_FILE: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read the FHIR package {file}: {reason}")]
    Unreadable { file: PathBuf, reason: String },
    #[error("the FHIR package {file} has no package/package.json with a name and a version")]
    NoManifest { file: PathBuf },
    #[error("the FHIR package {package} needs {dependency} {version}, which is not loaded: add it with --package (or to the packages folder)")]
    MissingDependency {
        package: String,
        dependency: String,
        version: String,
    },
}

#[derive(Debug)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub dependencies: Vec<(String, String)>,
    /// Its StructureDefinitions, ValueSets and CodeSystems.
    pub resources: Vec<Value>,
}

/// The `.tgz` files of a folder, in name order.
pub fn in_folder(dir: &Path) -> Result<Vec<PathBuf>, PackageError> {
    let unreadable = |e: std::io::Error| PackageError::Unreadable {
        file: dir.to_owned(),
        reason: e.to_string(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tgz"))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads one package.
pub fn read(file: &Path) -> Result<Package, PackageError> {
    let unreadable = |reason: String| PackageError::Unreadable {
        file: file.to_owned(),
        reason,
    };
    let bytes = std::fs::File::open(file).map_err(|e| unreadable(e.to_string()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut manifest = None;
    let mut resources = Vec::new();
    for entry in archive.entries().map_err(|e| unreadable(e.to_string()))? {
        let mut entry = entry.map_err(|e| unreadable(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| unreadable(e.to_string()))?
            .into_owned();
        let name = path.to_string_lossy().into_owned();
        let Some(inside) = name.strip_prefix("package/") else {
            continue;
        };
        // Only the package folder's own files (not `package/example/…`, `package/other/…`).
        if inside.contains('/') || !inside.ends_with(".json") || inside == ".index.json" {
            continue;
        }
        if entry.size() > MAX_FILE {
            return Err(unreadable(format!(
                "{name} is larger than {MAX_FILE} bytes"
            )));
        }
        let mut text = Vec::new();
        entry
            .read_to_end(&mut text)
            .map_err(|e| unreadable(e.to_string()))?;
        let Ok(json) = serde_json::from_slice::<Value>(&text) else {
            continue;
        };
        if inside == "package.json" {
            manifest = Some(json);
        } else if json
            .get("resourceType")
            .and_then(Value::as_str)
            .is_some_and(|t| KEPT.contains(&t))
        {
            resources.push(json);
        }
    }
    let manifest = manifest.ok_or_else(|| PackageError::NoManifest {
        file: file.to_owned(),
    })?;
    let (Some(name), Some(version)) = (
        manifest.get("name").and_then(Value::as_str),
        manifest.get("version").and_then(Value::as_str),
    ) else {
        return Err(PackageError::NoManifest {
            file: file.to_owned(),
        });
    };
    let dependencies = manifest
        .get("dependencies")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
        .collect();
    Ok(Package {
        name: name.to_owned(),
        version: version.to_owned(),
        dependencies,
        resources,
    })
}

/// Reads every package and checks each one's dependencies are loaded (by name; a different
/// version of a loaded dependency is accepted, the version is not resolved).
pub fn load_all(files: &[PathBuf]) -> Result<Vec<Package>, PackageError> {
    let packages: Vec<Package> = files.iter().map(|f| read(f)).collect::<Result<_, _>>()?;
    let loaded: HashMap<&str, &str> = packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    for p in &packages {
        for (dependency, version) in &p.dependencies {
            if BUILT_IN.contains(&dependency.as_str()) || loaded.contains_key(dependency.as_str()) {
                continue;
            }
            return Err(PackageError::MissingDependency {
                package: format!("{}#{}", p.name, p.version),
                dependency: dependency.clone(),
                version: version.clone(),
            });
        }
    }
    Ok(packages)
}
