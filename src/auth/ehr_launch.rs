//! EHR launch (SMART App Launch): a host app with access to a Patient makes a launch context
//! for it (`POST /auth/launch`); the app it launches passes the returned `launch` to
//! `/auth/authorize`, which takes the context's patient once.

use super::authorize::{random_token, sha256_hex, MAX_PENDING};
use super::Auth;
use crate::fhir::datetime::now_ms;

/// How long an EHR launch context waits for its app, ms.
pub const LAUNCH_LIFETIME: i64 = 5 * 60 * 1000;

/// An EHR launch context.
pub(super) struct Launch {
    patient: String,
    expires: i64,
}

/// `POST /auth/launch` (EHR launch): a host app with access to a Patient makes a launch
/// context for it; the app it launches passes the returned `launch` to `/auth/authorize`.
pub fn make_launch(auth: &Auth, patient: &str) -> Result<String, String> {
    let launch = random_token();
    let now = now_ms();
    let mut launches = auth.launch.launches.lock().expect("launch lock");
    launches.retain(|_, l| l.expires >= now);
    if launches.len() >= MAX_PENDING {
        return Err("too many launches in progress".into());
    }
    launches.insert(
        sha256_hex(&launch),
        Launch {
            patient: patient.to_owned(),
            expires: now + LAUNCH_LIFETIME,
        },
    );
    Ok(launch)
}

/// The patient of a launch context, which is used up; `None`: unknown or expired.
pub(super) fn take(auth: &Auth, launch: &str) -> Option<String> {
    let now = now_ms();
    let mut launches = auth.launch.launches.lock().expect("launch lock");
    launches.retain(|_, l| l.expires >= now);
    launches.remove(&sha256_hex(launch)).map(|l| l.patient)
}
