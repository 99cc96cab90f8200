//! FHIR packages made in a test: an NPM-format `.tgz` as `--package` reads it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{StoreKind, TempDir, TestServer};

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

/// A server holding the package `name` of `resources` (made by [`write_package`], without
/// dependencies), with the folder the package is in: keep it as long as the server.
pub async fn server_with_package(
    kind: StoreKind,
    name: &str,
    resources: &[Value],
) -> Option<(TestServer, TempDir)> {
    let dir = TempDir::new();
    let package = write_package(&dir.0, name, json!({}), resources);
    let server =
        TestServer::start_configured(kind, |s| s.validation.packages = vec![package]).await?;
    Some((server, dir))
}

/// Like `both_stores!`, on a server started by `$start` (a store kind to
/// `Option<(TestServer, TempDir)>`): one holding a package of its own ([`server_with_package`]).
#[macro_export]
macro_rules! with_package {
    ($start:ident, $name:ident, |$server:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($server: $crate::common::TestServer) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (server, _dir) = $start($crate::common::StoreKind::Sqlite).await.unwrap();
                run(server).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some((server, _dir)) = $start($crate::common::StoreKind::Postgres).await {
                    run(server).await;
                }
            }
        }
    };
}
