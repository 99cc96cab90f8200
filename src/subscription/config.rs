//! A Subscription resource read per the Backport IG's R4 profile (`backport-subscription`):
//! `criteria` is the topic's canonical URL, its filters are `backport-filter-criteria`
//! extensions on `criteria`, and the channel's payload content, heartbeat period, timeout and
//! maximum count are extensions on `channel` and `channel.payload`.

use std::time::Duration;

use serde_json::Value;

use super::topic::Topics;

const SD: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

/// The IG's extension `name` (`backport-filter-criteria`, …).
pub fn extension_url(name: &str) -> String {
    format!("{SD}{name}")
}

/// How much of the focus resource a notification carries (`backport-payload-content`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Empty,
    IdOnly,
    FullResource,
}

impl Content {
    pub fn parse(code: &str) -> Option<Content> {
        match code {
            "empty" => Some(Content::Empty),
            "id-only" => Some(Content::IdOnly),
            "full-resource" => Some(Content::FullResource),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelType {
    RestHook,
    WebSocket,
}

/// What a subscription asks for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub id: String,
    pub status: String,
    pub topic: String,
    /// `(resource type, [(parameter, value)])` per filter criterion.
    pub filters: Vec<(String, Vec<(String, String)>)>,
    pub channel: ChannelType,
    pub endpoint: Option<String>,
    /// `channel.header`: `Name: value` each.
    pub headers: Vec<(String, String)>,
    pub content: Content,
    pub heartbeat: Option<Duration>,
    pub timeout: Duration,
    /// The most events one notification carries.
    pub max_count: usize,
}

/// The most events in one notification when the subscription sets no `maxCount`.
pub const DEFAULT_MAX_COUNT: usize = 100;
/// How long a rest-hook POST may take when the subscription sets no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The extensions `url` of an element.
fn extensions<'a>(element: &'a Value, url: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    element["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |e| e["url"] == url)
}

fn positive(channel: &Value, name: &str) -> Result<Option<u64>, String> {
    let url = extension_url(name);
    let found = extensions(channel, &url).next().cloned();
    match found {
        None => Ok(None),
        Some(e) => e
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
            .and_then(|(_, v)| v.as_u64())
            .map(Some)
            .ok_or_else(|| format!("{name} must be a non-negative integer")),
    }
}

/// Reads and checks a Subscription against the topics in force and the server's rules for
/// endpoints (`https`, or `http` on loopback, or anywhere with `allow_http`). `Err` is the
/// reason the subscription is in `error`.
pub fn read(subscription: &Value, topics: &Topics, allow_http: bool) -> Result<Config, String> {
    let id = subscription["id"].as_str().unwrap_or_default().to_owned();
    let status = subscription["status"]
        .as_str()
        .unwrap_or("requested")
        .to_owned();
    let topic_url = subscription["criteria"]
        .as_str()
        .ok_or("Subscription.criteria must be the canonical URL of a topic")?;
    let topic = topics.get(topic_url).ok_or_else(|| {
        format!("'{topic_url}' is not a topic of this server (see the CapabilityStatement)")
    })?;
    let mut filters = Vec::new();
    let filter_url = extension_url("backport-filter-criteria");
    for criterion in extensions(&subscription["_criteria"], &filter_url) {
        let text = criterion["valueString"]
            .as_str()
            .ok_or("backport-filter-criteria must have a valueString")?;
        filters.push(read_filter(text, topic)?);
    }
    let channel = &subscription["channel"];
    let channel_type = match channel["type"].as_str() {
        Some("rest-hook") => ChannelType::RestHook,
        Some("websocket") => ChannelType::WebSocket,
        Some(other) => {
            return Err(format!(
                "channel type '{other}' is not supported: use rest-hook or websocket"
            ))
        }
        None => return Err("Subscription.channel.type is required".into()),
    };
    let endpoint = channel["endpoint"].as_str().map(str::to_owned);
    if channel_type == ChannelType::RestHook {
        check_endpoint(endpoint.as_deref(), allow_http)?;
    }
    let mut headers = Vec::new();
    for header in channel["header"].as_array().into_iter().flatten() {
        let text = header.as_str().unwrap_or_default();
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| format!("channel.header '{text}' is not 'Name: value'"))?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("channel.header '{text}' has no valid header name"));
        }
        if value.chars().any(char::is_control) {
            return Err(format!(
                "channel.header '{name}' has a control character in its value"
            ));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    match channel["payload"].as_str() {
        None | Some("application/fhir+json") | Some("application/json") => {}
        Some(other) => {
            return Err(format!(
                "channel.payload '{other}' is not supported: use application/fhir+json"
            ))
        }
    }
    let content_url = extension_url("backport-payload-content");
    let content = match extensions(&channel["_payload"], &content_url)
        .find_map(|e| e["valueCode"].as_str())
    {
        None => Content::IdOnly,
        Some(code) => Content::parse(code).ok_or_else(|| {
            format!("payload content '{code}' is not one of empty, id-only, full-resource")
        })?,
    };
    let heartbeat = positive(channel, "backport-heartbeat-period")?
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    let timeout = positive(channel, "backport-timeout")?
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let max_count = match positive(channel, "backport-max-count")? {
        None => DEFAULT_MAX_COUNT,
        Some(0) => return Err("backport-max-count must be at least 1".into()),
        Some(n) => n.min(1000) as usize,
    };
    Ok(Config {
        id,
        status,
        topic: topic.url.clone(),
        filters,
        channel: channel_type,
        endpoint,
        headers,
        content,
        heartbeat,
        timeout,
        max_count,
    })
}

/// A filter criterion: `Type?param=value&…` (or `param=value&…` for a topic on one type), each
/// parameter one the topic lets subscribers filter by.
fn read_filter(
    text: &str,
    topic: &super::topic::Topic,
) -> Result<(String, Vec<(String, String)>), String> {
    let (rtype, query) = match text.split_once('?') {
        Some((rtype, query)) => (rtype.to_owned(), query),
        None => {
            let mut types: Vec<&str> = topic.resources().collect();
            types.dedup();
            match types.as_slice() {
                [one] => ((*one).to_owned(), text),
                _ => {
                    return Err(format!(
                        "filter '{text}' must name its resource type (Type?param=value): the \
                         topic is about several"
                    ))
                }
            }
        }
    };
    if !topic.resources().any(|r| r == rtype) {
        return Err(format!(
            "filter '{text}': the topic {} is not about {rtype}",
            topic.url
        ));
    }
    let mut params = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let base = name.split(':').next().unwrap_or(&name);
        if !topic.can_filter(&rtype, base) {
            return Err(format!(
                "filter '{text}': the topic {} cannot be filtered by {rtype}.{base}",
                topic.url
            ));
        }
        params.push((name.into_owned(), value.into_owned()));
    }
    if params.is_empty() {
        return Err(format!("filter '{text}' has no parameter"));
    }
    Ok((rtype, params))
}

/// A rest-hook endpoint must be `https`, or `http` on a loopback address, unless the operator
/// allows `http` everywhere (`--subscription-allow-http`).
pub fn check_endpoint(endpoint: Option<&str>, allow_http: bool) -> Result<(), String> {
    let endpoint = endpoint.ok_or("a rest-hook channel needs channel.endpoint")?;
    let url = url::Url::parse(endpoint)
        .map_err(|e| format!("channel.endpoint '{endpoint}' is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(&url) => Ok(()),
        "http" => Err(format!(
            "channel.endpoint '{endpoint}' must be https (http only on a loopback address, \
             unless the server runs with --subscription-allow-http)"
        )),
        other => Err(format!(
            "channel.endpoint '{endpoint}': scheme '{other}' is not supported (use https)"
        )),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FLAG: &str = "https://signaal.dev/fhir/SubscriptionTopic/flag";

    fn subscription(endpoint: &str, filter: &str) -> Value {
        json!({
            "resourceType": "Subscription", "id": "s1", "status": "requested",
            "reason": "test", "criteria": FLAG,
            "_criteria": {"extension": [{"url": extension_url("backport-filter-criteria"), "valueString": filter}]},
            "channel": {
                "type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
                "_payload": {"extension": [{"url": extension_url("backport-payload-content"), "valueCode": "full-resource"}]},
                "header": ["Authorization: Bearer abc"],
                "extension": [{"url": extension_url("backport-heartbeat-period"), "valueUnsignedInt": 30}]
            }
        })
    }

    #[test]
    fn a_backport_subscription_is_read() {
        let config = read(
            &subscription(
                "https://coach.example/hook",
                "Flag?patient=Patient/p9&priority=ge2",
            ),
            &Topics::new(),
            false,
        )
        .unwrap();
        assert_eq!(config.content, Content::FullResource);
        assert_eq!(config.heartbeat, Some(Duration::from_secs(30)));
        assert_eq!(
            config.headers,
            vec![("Authorization".into(), "Bearer abc".into())]
        );
        assert_eq!(config.filters[0].1[1], ("priority".into(), "ge2".into()));
    }

    #[test]
    fn http_endpoints_only_on_loopback_unless_allowed() {
        let topics = Topics::new();
        let remote = subscription("http://coach.example/hook", "Flag?patient=Patient/p9");
        assert!(read(&remote, &topics, false).unwrap_err().contains("https"));
        assert!(read(&remote, &topics, true).is_ok());
        let local = subscription("http://127.0.0.1:9/hook", "Flag?patient=Patient/p9");
        assert!(read(&local, &topics, false).is_ok());
    }

    #[test]
    fn a_filter_the_topic_does_not_offer_is_refused() {
        let s = subscription("https://coach.example/hook", "Flag?author=Practitioner/1");
        assert!(read(&s, &Topics::new(), false)
            .unwrap_err()
            .contains("cannot be filtered by Flag.author"));
    }
}
