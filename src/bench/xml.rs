//! The XML phases: create and read of blood pressure Observations in FHIR XML (decision
//! 0033), beside the JSON create and read phases of `load`, so that the ratio of their rates
//! says what the format costs. Both send the same resource; the server stores JSON either way.

use std::sync::{Arc, Mutex};

use super::blood_pressure;
use super::load::{created_id, success, XorShift};
use super::phase::{drive, Budget, PhaseReport};
use crate::client::Client;
use crate::fhir::xml;

pub const CREATE: &str = "create (HTTP, XML)";
pub const READ: &str = "read (HTTP, XML)";

const FHIR_XML: &str = "application/fhir+xml";

/// Creates Observations sent as XML (answered in XML), then reads them back as XML.
pub async fn run(base: &str, clients: usize, budget: Budget) -> Result<Vec<PhaseReport>, String> {
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let create = drive(CREATE, clients, budget, |_| {
        let client = Client::new(base);
        let created = created.clone();
        move |seq| {
            let client = client.clone();
            let created = created.clone();
            let body = xml::to_xml(&blood_pressure(seq), false).map(String::into_bytes);
            async move {
                let body = body.map_err(|e| e.to_string())?;
                let reply = client
                    .send(
                        "POST",
                        "Observation",
                        &[("Content-Type", FHIR_XML), ("Accept", FHIR_XML)],
                        Some(body),
                    )
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
    let ids: Arc<Vec<String>> = Arc::new(std::mem::take(
        &mut *created.lock().map_err(|e| e.to_string())?,
    ));
    if ids.is_empty() {
        return Err("no resource was created in XML, so there is nothing to read".into());
    }
    let read = drive(READ, clients, budget, |w| {
        let client = Client::new(base);
        let ids = ids.clone();
        let mut random = XorShift::new(w as u64 + 1);
        move |_| {
            let client = client.clone();
            let path = format!("Observation/{}", ids[random.below(ids.len())]);
            async move {
                let reply = client
                    .send("GET", &path, &[("Accept", FHIR_XML)], None)
                    .await
                    .map_err(|e| e.to_string())?;
                success(&reply)
            }
        }
    })
    .await?;
    Ok(vec![create, read])
}
