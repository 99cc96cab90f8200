//! The limit on log-in attempts: after [`FREE_ATTEMPTS`] failures under one name, known or not,
//! the name waits before its next try, longer with each further failure (RFC 6819 4.4.3.6:
//! online guessing of passwords). The page does not tell which names exist: a wrong name counts
//! like a wrong password.

use std::time::Duration;

use super::authorize::MAX_PENDING;
use super::Auth;

/// Failed log-ins under one name before it waits.
pub const FREE_ATTEMPTS: u32 = 5;
/// The first wait after [`FREE_ATTEMPTS`] failures; it doubles with each further failure, up
/// to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(30);
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

#[derive(Default)]
pub(super) struct Attempts {
    failures: u32,
    wait_until: i64,
}

/// How long a name must still wait before its next attempt, ms (0: it may try).
pub(super) fn wait_for(auth: &Auth, name: &str, now: i64) -> i64 {
    let attempts = auth.launch.attempts.lock().expect("attempts lock");
    attempts
        .get(name)
        .map_or(0, |a| (a.wait_until - now).max(0))
}

pub(super) fn failed(auth: &Auth, name: &str, now: i64) {
    let mut attempts = auth.launch.attempts.lock().expect("attempts lock");
    if attempts.len() >= MAX_PENDING {
        attempts.retain(|_, a| a.wait_until > now);
    }
    let a = attempts.entry(name.to_owned()).or_default();
    a.failures += 1;
    if a.failures >= FREE_ATTEMPTS {
        let doublings = (a.failures - FREE_ATTEMPTS).min(10);
        let wait = (FIRST_WAIT * 2u32.pow(doublings)).min(MAX_WAIT);
        a.wait_until = now + wait.as_millis() as i64;
    }
}

/// A log-in succeeded: the name's failures are forgotten.
pub(super) fn succeeded(auth: &Auth, name: &str) {
    auth.launch
        .attempts
        .lock()
        .expect("attempts lock")
        .remove(name);
}
