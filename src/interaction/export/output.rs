//! The NDJSON files of an export: one or more per type (a new file past the size limit),
//! appended a page at a time.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::error::FhirError;
use crate::fhir::meta;
use crate::store::Version;

use super::job::Export;

/// NDJSON files of one kind of line (a resource type, or `Bundle` for deletions).
pub(super) struct Output {
    pub(super) rtype: String,
    /// The file name's stem.
    pub(super) stem: String,
    pub(super) dir: PathBuf,
    pub(super) files_url: String,
    pub(super) size_limit: u64,
    /// The file being written: its writer, name, lines and bytes.
    pub(super) file: Option<(tokio::io::BufWriter<tokio::fs::File>, String, u64, u64)>,
    pub(super) done: Vec<Value>,
    /// The names of every file written, the open one included.
    pub(super) names: Vec<String>,
}

impl Output {
    pub(super) fn new(export: &Export, rtype: &str, stem: &str) -> Self {
        Output {
            rtype: rtype.to_owned(),
            stem: stem.to_owned(),
            dir: export.dir.clone(),
            files_url: export.files_url.clone(),
            size_limit: export.file_size,
            file: None,
            done: Vec::new(),
            names: Vec::new(),
        }
    }

    /// The ids among `wanted` of the resources written so far (read back from the files).
    pub(super) async fn written(
        &mut self,
        wanted: &HashSet<String>,
    ) -> Result<HashSet<String>, FhirError> {
        use tokio::io::AsyncBufReadExt;
        if let Some((writer, ..)) = self.file.as_mut() {
            writer.flush().await.map_err(io)?;
        }
        let mut found = HashSet::new();
        for name in &self.names {
            let file = tokio::fs::File::open(self.dir.join(name))
                .await
                .map_err(io)?;
            let mut lines = tokio::io::BufReader::new(file).lines();
            while let Some(line) = lines.next_line().await.map_err(io)? {
                if let Some(id) = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|r| r["id"].as_str().map(str::to_owned))
                {
                    if wanted.contains(&id) {
                        found.insert(id);
                    }
                }
            }
        }
        Ok(found)
    }

    pub(super) async fn line(&mut self, value: &Value) -> Result<(), FhirError> {
        if self.file.as_ref().is_some_and(|f| f.3 >= self.size_limit) {
            self.close().await?;
        }
        if self.file.is_none() {
            let name = format!("{}-{}.ndjson", self.stem, self.done.len() + 1);
            let file = tokio::fs::File::create(self.dir.join(&name))
                .await
                .map_err(io)?;
            self.names.push(name.clone());
            self.file = Some((tokio::io::BufWriter::new(file), name, 0, 0));
        }
        let (writer, _, count, bytes) = self.file.as_mut().expect("opened above");
        let mut line = serde_json::to_vec(value).map_err(|e| FhirError::Internal(e.to_string()))?;
        line.push(b'\n');
        writer.write_all(&line).await.map_err(io)?;
        *count += 1;
        *bytes += line.len() as u64;
        Ok(())
    }

    pub(super) async fn write(&mut self, version: &Version) -> Result<(), FhirError> {
        match meta::stamp(version) {
            Some(resource) => self.line(&resource).await,
            None => Ok(()),
        }
    }

    pub(super) async fn close(&mut self) -> Result<(), FhirError> {
        if let Some((mut writer, name, count, _)) = self.file.take() {
            writer.flush().await.map_err(io)?;
            self.done.push(json!({
                "type": self.rtype,
                "url": format!("{}/{name}", self.files_url),
                "count": count,
            }));
        }
        Ok(())
    }
}

pub(super) fn io(e: std::io::Error) -> FhirError {
    FhirError::Internal(format!("export file: {e}"))
}
