//! Subscription topics as data. FHIR R4 has no SubscriptionTopic resource: the Subscriptions
//! Backport IG carries one as a `Basic` whose `code` is `SubscriptionTopic` (fhir-types) with
//! the R5 cross-version extensions (`extension-SubscriptionTopic.*`). A topic is its canonical
//! URL, its resource triggers (type, interactions, a FHIRPath criterion on `%previous` and
//! `%current`) and what a subscriber may filter by (`canFilterBy`).
//!
//! Signaal ships its topics in `conformance/subscription-topics.json`; an administrator adds one
//! by posting such a Basic, and it is in force as soon as the subscription worker reads that
//! write from the outbox.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::fhirpath::{self, Expression, Item};
use crate::store::Method;

/// The `Basic.code` of a topic.
pub const FHIR_TYPES: &str = "http://hl7.org/fhir/fhir-types";
pub const TOPIC_CODE: &str = "SubscriptionTopic";

/// The cross-version extension prefixes a topic's elements are carried in (R5, and R4B's of
/// the earlier IG versions).
const PREFIXES: &[&str] = &[
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.",
    "http://hl7.org/fhir/4.3/StructureDefinition/extension-SubscriptionTopic.",
];

/// The canonical URL of a Basic-carried artifact (IG 1.2) besides `SubscriptionTopic.url`.
const ARTIFACT_URL: &str = "http://hl7.org/fhir/StructureDefinition/artifact-url";

/// The interactions a trigger names (`supportedInteraction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Create,
    Update,
    Delete,
}

impl Interaction {
    fn parse(code: &str) -> Option<Interaction> {
        match code {
            "create" => Some(Interaction::Create),
            "update" => Some(Interaction::Update),
            "delete" => Some(Interaction::Delete),
            _ => None,
        }
    }

    /// The interaction a stored version was written with: a deletion, the first version (a
    /// create, also by PUT), or an update.
    pub fn of(method: Method, version: i64) -> Interaction {
        match method {
            Method::Delete => Interaction::Delete,
            _ if version == 1 => Interaction::Create,
            _ => Interaction::Update,
        }
    }
}

/// One `resourceTrigger`.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub resource: String,
    /// Empty: every interaction.
    pub interactions: Vec<Interaction>,
    pub criteria: Option<Expression>,
}

/// One `canFilterBy`: a search parameter of `resource` a subscription may filter on.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterBy {
    pub resource: String,
    pub parameter: String,
}

#[derive(Debug, Clone)]
pub struct Topic {
    pub url: String,
    pub title: Option<String>,
    pub triggers: Vec<Trigger>,
    pub can_filter_by: Vec<FilterBy>,
}

/// Whether a resource is a Basic carrying a SubscriptionTopic.
pub fn is_topic(resource: &Value) -> bool {
    resource["resourceType"] == "Basic"
        && resource["code"]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["system"] == FHIR_TYPES && c["code"] == TOPIC_CODE)
}

/// The element `name` of a topic: the extensions of `extensions` for it.
fn elements<'a>(extensions: &'a Value, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    extensions
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |e| {
            e["url"]
                .as_str()
                .is_some_and(|u| PREFIXES.iter().any(|p| u.strip_prefix(p) == Some(name)))
        })
}

/// The sub-extensions `name` of a complex extension.
fn parts<'a>(extension: &'a Value, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    extension["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |e| e["url"] == name)
}

/// The `value[x]` of an extension, as text.
fn text(extension: &Value) -> Option<&str> {
    extension.as_object()?.iter().find_map(|(k, v)| {
        if k.starts_with("value") {
            v.as_str()
        } else {
            None
        }
    })
}

/// A resource type from a trigger's or filter's `resource` (a type or its StructureDefinition).
fn resource_type(uri: &str) -> String {
    uri.rsplit('/').next().unwrap_or(uri).to_owned()
}

/// Reads a topic from its Basic; `Err` says what is wrong with it.
pub fn parse(basic: &Value) -> Result<Topic, String> {
    if !is_topic(basic) {
        return Err("not a SubscriptionTopic (Basic.code fhir-types#SubscriptionTopic)".into());
    }
    let ext = &basic["extension"];
    let url = elements(ext, "url")
        .chain(
            ext.as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["url"] == ARTIFACT_URL),
        )
        .find_map(text)
        .ok_or("the topic has no canonical URL (extension-SubscriptionTopic.url)")?
        .to_owned();
    let title = elements(ext, "title").find_map(text).map(str::to_owned);
    let mut triggers = Vec::new();
    for trigger in elements(ext, "resourceTrigger") {
        let resource = parts(trigger, "resource")
            .find_map(text)
            .map(resource_type)
            .ok_or("a resourceTrigger names no resource")?;
        if !crate::fhir::resource_types::is_resource_type(&resource) {
            return Err(format!(
                "resourceTrigger: '{resource}' is not an R4 resource type"
            ));
        }
        let mut interactions = Vec::new();
        for code in parts(trigger, "supportedInteraction").filter_map(text) {
            interactions.push(Interaction::parse(code).ok_or_else(|| {
                format!("resourceTrigger: '{code}' is not an interaction (create, update, delete)")
            })?);
        }
        let criteria = parts(trigger, "fhirPathCriteria")
            .find_map(text)
            .map(|source| {
                fhirpath::parse(source)
                    .map_err(|e| format!("resourceTrigger.fhirPathCriteria '{source}': {e}"))
            })
            .transpose()?;
        if criteria.is_none() && parts(trigger, "queryCriteria").next().is_some() {
            return Err(
                "resourceTrigger.queryCriteria is not supported: state the trigger as \
                 fhirPathCriteria on %previous and %current"
                    .into(),
            );
        }
        triggers.push(Trigger {
            resource,
            interactions,
            criteria,
        });
    }
    if triggers.is_empty() {
        return Err("the topic has no resourceTrigger".into());
    }
    let mut can_filter_by = Vec::new();
    for filter in elements(ext, "canFilterBy") {
        let parameter = parts(filter, "filterParameter")
            .find_map(text)
            .ok_or("a canFilterBy has no filterParameter")?
            .to_owned();
        let resource = parts(filter, "resource")
            .find_map(text)
            .map(resource_type)
            .unwrap_or_else(|| triggers[0].resource.clone());
        can_filter_by.push(FilterBy {
            resource,
            parameter,
        });
    }
    Ok(Topic {
        url,
        title,
        triggers,
        can_filter_by,
    })
}

impl Topic {
    /// Whether a write of `rtype` by `interaction`, from `previous` to `current`, is an event of
    /// this topic. A criterion that cannot be evaluated is no event (and is logged).
    pub fn triggered_by(
        &self,
        rtype: &str,
        interaction: Interaction,
        previous: Option<&Value>,
        current: Option<&Value>,
    ) -> bool {
        self.triggers.iter().any(|t| {
            t.resource == rtype
                && (t.interactions.is_empty() || t.interactions.contains(&interaction))
                && t.criteria.as_ref().is_none_or(|c| {
                    let empty = Value::Null;
                    let focus = current.or(previous).unwrap_or(&empty);
                    let vars = vec![("current", current), ("previous", previous)];
                    match c.evaluate_with(focus, vars) {
                        Ok(out) => matches!(out.as_slice(), [Item::Boolean(true)]),
                        Err(e) => {
                            tracing::warn!(topic = %self.url, criteria = c.source(), error = %e,
                                "a topic's criteria failed");
                            false
                        }
                    }
                })
        })
    }

    /// Whether `parameter` (without modifier) of `rtype` is one subscribers may filter on.
    pub fn can_filter(&self, rtype: &str, parameter: &str) -> bool {
        self.can_filter_by
            .iter()
            .any(|f| f.resource == rtype && f.parameter == parameter)
    }

    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.triggers.iter().map(|t| t.resource.as_str())
    }
}

/// The topics Signaal ships (`conformance/subscription-topics.json`).
pub fn shipped() -> Vec<Topic> {
    let basics: Vec<Value> =
        serde_json::from_str(include_str!("../../conformance/subscription-topics.json"))
            .expect("conformance/subscription-topics.json is JSON");
    basics
        .iter()
        .map(|b| parse(b).expect("a shipped topic is valid"))
        .collect()
}

/// The topics in force: the shipped ones and those posted as Basic resources, by URL (a posted
/// topic with a shipped topic's URL does not replace it).
#[derive(Debug, Clone, Default)]
pub struct Topics {
    shipped: BTreeMap<String, Topic>,
    /// Posted topics by the id of their Basic.
    posted: BTreeMap<String, Topic>,
}

impl Topics {
    pub fn new() -> Topics {
        Topics {
            shipped: shipped().into_iter().map(|t| (t.url.clone(), t)).collect(),
            posted: BTreeMap::new(),
        }
    }

    /// Records the write of a Basic: a topic (now in force), or not one (any topic it was is
    /// gone). An invalid topic is logged and not in force.
    pub fn basic_written(&mut self, id: &str, content: Option<&Value>) {
        self.posted.remove(id);
        if let Some(basic) = content.filter(|b| is_topic(b)) {
            match parse(basic) {
                Ok(topic) => {
                    self.posted.insert(id.to_owned(), topic);
                }
                Err(e) => tracing::warn!(basic = id, error = %e, "a posted topic is not valid"),
            }
        }
    }

    pub fn get(&self, url: &str) -> Option<&Topic> {
        self.shipped
            .get(url)
            .or_else(|| self.posted.values().find(|t| t.url == url))
    }

    /// Every topic in force, shipped ones first.
    pub fn all(&self) -> impl Iterator<Item = &Topic> {
        let shipped: Vec<&str> = self.shipped.keys().map(String::as_str).collect();
        self.shipped.values().chain(
            self.posted
                .values()
                .filter(move |t| !shipped.contains(&t.url.as_str())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flag_topic() -> Topic {
        Topics::new()
            .get("https://signaal.dev/fhir/SubscriptionTopic/flag")
            .unwrap()
            .clone()
    }

    #[test]
    fn the_shipped_topics_parse() {
        let topics = Topics::new();
        assert_eq!(topics.all().count(), 5);
        assert!(flag_topic().can_filter("Flag", "priority"));
        assert!(!flag_topic().can_filter("Flag", "author"));
    }

    #[test]
    fn a_flag_made_inactive_is_an_event_and_a_text_change_is_not() {
        let topic = flag_topic();
        let active = json!({"resourceType": "Flag", "status": "active"});
        let inactive = json!({"resourceType": "Flag", "status": "inactive"});
        let update = Interaction::Update;
        assert!(topic.triggered_by("Flag", update, Some(&active), Some(&inactive)));
        assert!(!topic.triggered_by("Flag", update, Some(&active), Some(&active)));
        assert!(topic.triggered_by("Flag", Interaction::Create, None, Some(&inactive)));
        assert!(!topic.triggered_by("Observation", Interaction::Create, None, Some(&active)));
    }

    #[test]
    fn a_topic_with_query_criteria_only_is_refused() {
        let mut basic: Value =
            serde_json::from_str(include_str!("../../conformance/subscription-topics.json"))
                .map(|v: Vec<Value>| v[0].clone())
                .unwrap();
        let trigger = basic["extension"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|e| e["url"].as_str().unwrap().ends_with("resourceTrigger"))
            .unwrap();
        let parts = trigger["extension"].as_array_mut().unwrap();
        parts.retain(|p| p["url"] != "fhirPathCriteria");
        parts.push(json!({"url": "queryCriteria", "extension": [{"url": "current", "valueString": "status=active"}]}));
        assert!(parse(&basic).unwrap_err().contains("queryCriteria"));
    }
}
