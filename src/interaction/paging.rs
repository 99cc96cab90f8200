//! Paging links of keyset-paged Bundles (search and history).
//!
//! A page is the `count` rows after (or before) a cursor on a stable row order, so links stay
//! correct while others write and nothing is kept on the server between requests. The cursor
//! parameters are opaque to clients.

use serde_json::{json, Value};

/// Where a page sits.
pub struct Page {
    /// Cursors (opaque text) of the first and last row on the page, in the order shown.
    pub first: Option<String>,
    pub last: Option<String>,
    /// The store found rows beyond this page in the direction it read.
    pub more: bool,
    /// The page was read backwards (a `previous` link was followed).
    pub backwards: bool,
    /// The page was reached by following a `next` link.
    pub forwards: bool,
}

/// `self`, `next` and `previous` links. `params` are the request's parameters without cursors;
/// `next_param`/`previous_param` are the cursor parameters that page in each direction.
pub fn links(
    url: &str,
    params: &[(String, String)],
    page: &Page,
    next_param: &str,
    previous_param: &str,
) -> Vec<Value> {
    let link = |cursor: Option<(&str, &str)>| {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        serializer.extend_pairs(params);
        if let Some((name, key)) = cursor {
            serializer.append_pair(name, key);
        }
        let query = serializer.finish();
        if query.is_empty() {
            url.to_owned()
        } else {
            format!("{url}?{query}")
        }
    };
    let mut links = vec![json!({"relation": "self", "url": link(None)})];
    // Rows exist past the last one: the store said so, or we came from there going backwards.
    if let Some(last) = page.last.as_deref().filter(|_| page.more || page.backwards) {
        links.push(json!({"relation": "next", "url": link(Some((next_param, last)))}));
    }
    // Rows exist before the first one: we came from there, or the store said so going backwards.
    if let Some(first) = page
        .first
        .as_deref()
        .filter(|_| page.forwards || (page.backwards && page.more))
    {
        links.push(json!({"relation": "previous", "url": link(Some((previous_param, first)))}));
    }
    links
}
