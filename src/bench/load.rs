//! The HTTP phases: create, read and update of blood pressure Observations against a running
//! server, through [`Client`] (one per worker, so each worker keeps one connection alive, as
//! a real client application would).

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::blood_pressure;
use super::phase::{drive, Budget, PhaseReport};
use crate::client::{Client, Reply};

pub const CREATE: &str = "create (HTTP)";
pub const READ: &str = "read (HTTP)";
pub const UPDATE: &str = "update (HTTP)";

/// Runs create, then read and update on the resources created; with `database` (the
/// server's), each phase's storage per request too.
pub async fn run(
    base: &str,
    clients: usize,
    budget: Budget,
    database: Option<&str>,
) -> Result<Vec<PhaseReport>, String> {
    probe(base).await?;
    let mut size = Storage::of(database).await?;

    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let create = drive(CREATE, clients, budget, |_| {
        let client = Client::new(base);
        let created = created.clone();
        move |seq| {
            let client = client.clone();
            let created = created.clone();
            let body = blood_pressure(seq).to_string().into_bytes();
            async move {
                let reply = client
                    .send("POST", "Observation", &[], Some(body))
                    .await
                    .map_err(|e| e.to_string())?;
                success(&reply)?;
                let id = created_id(&reply)
                    .ok_or_else(|| format!("{} without a Location header", reply.status))?;
                created.lock().map_err(|e| e.to_string())?.push(id);
                Ok(())
            }
        }
    })
    .await?;
    let mut create = create;
    create.bytes_per_request = size.grown(&create).await?;

    let ids: Arc<Vec<String>> = Arc::new(std::mem::take(
        &mut *created.lock().map_err(|e| e.to_string())?,
    ));
    if ids.is_empty() {
        return Err("no resource was created, so there is nothing to read or update".into());
    }

    // Random ids, so reads are spread over the whole table rather than one hot row.
    let read = drive(READ, clients, budget, |w| {
        let client = Client::new(base);
        let ids = ids.clone();
        let mut random = XorShift::new(w as u64);
        move |_| {
            let client = client.clone();
            let path = format!("Observation/{}", ids[random.below(ids.len())]);
            async move {
                let reply = client.get(&path).await.map_err(|e| e.to_string())?;
                success(&reply)
            }
        }
    })
    .await?;
    let mut read = read;
    read.bytes_per_request = size.grown(&read).await?;

    // Worker w updates ids w, w + clients, w + 2·clients, …: two workers never write the same
    // resource at once (unless fewer resources than clients were created), so the numbers are
    // not about lock contention on one row.
    let update = drive(UPDATE, clients, budget, |w| {
        let client = Client::new(base);
        let ids = ids.clone();
        let mut next = w;
        move |seq| {
            let client = client.clone();
            let id = ids[next % ids.len()].clone();
            next += clients;
            let mut resource = blood_pressure(seq);
            resource["id"] = Value::String(id.clone());
            let body = resource.to_string().into_bytes();
            async move {
                let reply = client
                    .send("PUT", &format!("Observation/{id}"), &[], Some(body))
                    .await
                    .map_err(|e| e.to_string())?;
                success(&reply)
            }
        }
    })
    .await?;
    let mut update = update;
    update.bytes_per_request = size.grown(&update).await?;

    Ok(vec![create, read, update])
}

/// The storage of the server's database between phases.
pub(super) struct Storage<'a> {
    database: Option<&'a str>,
    bytes: u64,
}

/// How long the server is given to write what it records behind the requests (its audit
/// log is written in batches) before the storage is measured.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(1_000);

impl<'a> Storage<'a> {
    pub(super) async fn of(database: Option<&'a str>) -> Result<Storage<'a>, String> {
        let bytes = match database {
            Some(url) => used_bytes(url).await?,
            None => 0,
        };
        Ok(Storage { database, bytes })
    }

    /// The bytes added since the last measurement, per successful operation of `phase`.
    pub(super) async fn grown(&mut self, phase: &PhaseReport) -> Result<Option<f64>, String> {
        let Some(url) = self.database else {
            return Ok(None);
        };
        tokio::time::sleep(SETTLE).await;
        let now = used_bytes(url).await?;
        let grown = now.saturating_sub(self.bytes);
        self.bytes = now;
        let done = phase.requests - phase.errors;
        Ok((done > 0).then(|| grown as f64 / done as f64))
    }
}

async fn used_bytes(url: &str) -> Result<u64, String> {
    crate::store::size::used_bytes(url)
        .await
        .map_err(|e| format!("--database: {e}"))
}

/// Fails clearly, before any load, when there is no FHIR server at `base`.
async fn probe(base: &str) -> Result<(), String> {
    let reply = Client::new(base)
        .get("metadata")
        .await
        .map_err(|e| format!("cannot reach a server at {base}: {e}"))?;
    if reply.status != 200 {
        return Err(format!(
            "{base}/metadata answered {}, not 200: is this the FHIR base of a running Signaal?",
            reply.status
        ));
    }
    Ok(())
}

/// Any 2xx is a success; otherwise the status and the start of the body, for the report.
pub(super) fn success(reply: &Reply) -> Result<(), String> {
    if (200..300).contains(&reply.status) {
        return Ok(());
    }
    let body = String::from_utf8_lossy(&reply.body);
    let snippet: String = body.chars().take(300).collect();
    Err(format!("{} {snippet}", reply.status))
}

/// The id in `Location: [base]/Observation/[id]/_history/[vid]`.
pub(super) fn created_id(reply: &Reply) -> Option<String> {
    let location = reply.header("location")?;
    let (_, rest) = location.rsplit_once("/Observation/")?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then(|| id.to_owned())
}

/// A tiny deterministic generator (xorshift64*), enough to pick ids and to make synthetic
/// patients; no crate needed.
pub(super) struct XorShift(u64);

impl XorShift {
    pub(super) fn new(seed: u64) -> Self {
        XorShift(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() >> 33) as usize % n
    }
}
