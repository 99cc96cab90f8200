//! Where public keys come from: a client's JWKS (stored at registration, or fetched from its
//! URL and cached by `kid`), or the trusted issuer's (a file or a URL).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};

/// A fetched JWKS is used for at most this long before it is fetched again.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// An unknown `kid` refetches the JWKS (key rotation), but not more often than this.
const MIN_REFETCH: Duration = Duration::from_secs(1);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub enum Source {
    /// The JWKS document itself.
    Inline(String),
    File(String),
    Url(String),
}

impl Source {
    /// `http(s)://…` is a URL, anything else a file path (the trusted issuer's `--trusted-jwks`).
    pub fn parse(text: &str) -> Result<Source, String> {
        if text.starts_with("http://") {
            Ok(Source::Url(text.to_owned()))
        } else if text.starts_with("https://") {
            Err(https_unsupported(text))
        } else {
            Ok(Source::File(text.to_owned()))
        }
    }
}

pub fn https_unsupported(url: &str) -> String {
    format!(
        "cannot fetch {url}: this build fetches JWKS over http:// only (put the JWKS in a file \
         with --jwks, or serve it on an internal http:// address)"
    )
}

struct Fetched {
    set: JwkSet,
    at: Instant,
}

/// JWKS documents fetched from URLs, by URL.
#[derive(Default)]
pub struct Cache {
    fetched: Mutex<HashMap<String, Fetched>>,
}

impl Cache {
    /// The key `kid` of a source; a URL's JWKS is fetched when it is not cached, older than an
    /// hour, or lacks `kid` (a rotated key).
    pub async fn key(&self, source: &Source, kid: &str) -> Result<Jwk, String> {
        let unknown = || format!("no key with kid '{kid}' in the JWKS");
        match source {
            Source::Inline(text) => parse(text)?.find(kid).cloned().ok_or_else(unknown),
            Source::File(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| format!("cannot read the JWKS file {path}: {e}"))?;
                parse(&text)?.find(kid).cloned().ok_or_else(unknown)
            }
            Source::Url(url) => {
                let refetch = {
                    let fetched = self.fetched.lock().expect("JWKS cache lock");
                    match fetched.get(url) {
                        Some(f) if f.at.elapsed() < MAX_AGE => match f.set.find(kid) {
                            Some(key) => return Ok(key.clone()),
                            None if f.at.elapsed() < MIN_REFETCH => return Err(unknown()),
                            None => true,
                        },
                        _ => true,
                    }
                };
                debug_assert!(refetch);
                let set = fetch(url).await?;
                let key = set.find(kid).cloned();
                self.fetched.lock().expect("JWKS cache lock").insert(
                    url.clone(),
                    Fetched {
                        set,
                        at: Instant::now(),
                    },
                );
                key.ok_or_else(unknown)
            }
        }
    }
}

pub fn parse(text: &str) -> Result<JwkSet, String> {
    serde_json::from_str(text).map_err(|e| format!("the JWKS is not valid: {e}"))
}

async fn fetch(url: &str) -> Result<JwkSet, String> {
    if url.starts_with("https://") {
        return Err(https_unsupported(url));
    }
    let client = crate::client::Client::new(url);
    let reply = tokio::time::timeout(FETCH_TIMEOUT, client.get(url))
        .await
        .map_err(|_| format!("fetching the JWKS at {url} timed out"))?
        .map_err(|e| format!("cannot fetch the JWKS at {url}: {e}"))?;
    if reply.status != 200 {
        return Err(format!(
            "fetching the JWKS at {url} answered {}",
            reply.status
        ));
    }
    parse(&String::from_utf8_lossy(&reply.body))
}
