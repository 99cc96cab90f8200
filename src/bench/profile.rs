//! The profile phase: the create phase's blood pressure Observation, claiming the core
//! blood-pressure profile in `meta.profile`, so the server validates it against that profile
//! (and, through its base, the vital-signs profile) besides the base definition of
//! Observation. Beside the create phase of `load`, the ratio of their rates says what
//! validating against a profile costs (issue 18).

use serde_json::{json, Value};

use super::blood_pressure;
use super::load::success;
use super::phase::{drive, Budget, PhaseReport};
use crate::client::Client;

pub const CREATE: &str = "create (HTTP, profile)";

/// The core profile of a blood pressure panel (observation-vitalsigns.html).
pub const BLOOD_PRESSURE: &str = "http://hl7.org/fhir/StructureDefinition/bp";

/// Creates Observations that claim the blood-pressure profile.
pub async fn run(base: &str, clients: usize, budget: Budget) -> Result<Vec<PhaseReport>, String> {
    let create = drive(CREATE, clients, budget, |_| {
        let client = Client::new(base);
        move |seq| {
            let client = client.clone();
            let body = claiming(seq).to_string().into_bytes();
            async move {
                let reply = client
                    .send("POST", "Observation", &[], Some(body))
                    .await
                    .map_err(|e| e.to_string())?;
                success(&reply)
            }
        }
    })
    .await?;
    Ok(vec![create])
}

/// The `n`th blood pressure panel, claiming the blood-pressure profile.
fn claiming(n: u64) -> Value {
    let mut resource = blood_pressure(n);
    resource["meta"] = json!({"profile": [BLOOD_PRESSURE]});
    resource
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::Validator;

    #[test]
    fn the_claimed_profile_is_known_and_the_panel_conforms_to_it() {
        let validator = Validator::default();
        assert!(validator.defs().get(BLOOD_PRESSURE).is_some());
        let outcome = validator.validate(&claiming(4321), "Observation", &[]);
        assert!(!outcome.has_errors(), "{:?}", outcome.into_issues());
    }

    #[test]
    fn a_panel_without_its_systolic_component_breaks_the_claimed_profile() {
        let mut resource = claiming(4321);
        resource["component"].as_array_mut().unwrap().remove(0);
        let outcome = Validator::default().validate(&resource, "Observation", &[]);
        assert!(outcome.has_errors(), "the check of the claim is made");
    }
}
