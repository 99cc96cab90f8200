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
    // Each worker reads over its own connection without the client's pool (`Lean`): on two
    // shared cores the load generator's own CPU per request counts against the server's.
    let read = drive(READ, clients, budget, |w| {
        let connection = Arc::new(tokio::sync::Mutex::new(Lean::new(base)));
        let ids = ids.clone();
        let mut random = XorShift::new(w as u64);
        move |_| {
            let connection = connection.clone();
            let id = ids[random.below(ids.len())].clone();
            async move { connection.lock().await.get("Observation/", &id).await }
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

/// One keep-alive HTTP/1.1 connection to the server, for the read phase: a GET and its whole
/// body, with none of the pooling client's work per request (pool checkout, parsing the full
/// URL, copying the headers). Reconnects when the server closed the connection.
struct Lean {
    /// `host:port` of the base.
    authority: String,
    /// The base's path with a trailing `/` (`/fhir/`).
    prefix: String,
    sender:
        Option<hyper::client::conn::http1::SendRequest<http_body_util::Empty<axum::body::Bytes>>>,
}

impl Lean {
    fn new(base: &str) -> Self {
        let rest = base.strip_prefix("http://").unwrap_or(base);
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.trim_end_matches('/');
        Lean {
            authority: authority.to_owned(),
            prefix: if path.is_empty() {
                "/".into()
            } else {
                format!("/{path}/")
            },
            sender: None,
        }
    }

    async fn get(&mut self, path: &str, id: &str) -> Result<(), String> {
        use http_body_util::BodyExt;
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => {
                let stream = tokio::net::TcpStream::connect(&self.authority)
                    .await
                    .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                self.sender.insert(sender)
            }
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let request = axum::http::Request::get(format!("{}{path}{id}", self.prefix))
            .header(axum::http::header::HOST, &self.authority)
            .body(http_body_util::Empty::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        success(&Reply {
            status,
            headers: Default::default(),
            body,
        })
    }
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
