//! XML Patch (RFC 5261, `application/xml-patch+xml`; decision 0040): HL7's official cases
//! (fhir-test-cases `r4/patch/xml-patch-tests.xml`) and the XPath subset of the selectors
//! against `signaal::fhir::xml::patch`, then the PATCH interaction with XML Patch over HTTP on
//! both stores, and errors answered in XML when XML was asked for.

mod common;

use common::{create, expect_status, patient};
use serde_json::Value;
use signaal::fhir::xml::dom::Dom;
use signaal::fhir::xml::patch::{Diff, XmlPatchError};
use signaal::fhir::xml::xpath::{Hit, Selector};
use signaal::fhir::xml::{self, FHIR_NS};

// ---- The official cases -----------------------------------------------------------------------

/// An XML document in a form where equal documents are equal strings: names expanded, the
/// namespaces in scope and the attributes sorted, white-space-only text dropped and text
/// trimmed (the cases are indented), comments kept.
fn canonical(node: roxmltree::Node, out: &mut String) {
    if node.is_element() {
        let name = node.tag_name();
        out.push_str(&format!(
            "<{{{}}}{}",
            name.namespace().unwrap_or(""),
            name.name()
        ));
        let mut namespaces: Vec<String> = node
            .namespaces()
            .filter(|n| n.name() != Some("xml"))
            .map(|n| format!(" ns:{}={}", n.name().unwrap_or(""), n.uri()))
            .collect();
        namespaces.sort();
        namespaces.dedup();
        let mut attributes: Vec<String> = node
            .attributes()
            .map(|a| {
                format!(
                    " {{{}}}{}={:?}",
                    a.namespace().unwrap_or(""),
                    a.name(),
                    a.value()
                )
            })
            .collect();
        attributes.sort();
        out.push_str(&namespaces.concat());
        out.push_str(&attributes.concat());
        out.push('>');
        for child in node.children() {
            canonical(child, out);
        }
        out.push_str("</>");
    } else if node.is_text() {
        let text = node.text().unwrap_or("").trim();
        if !text.is_empty() {
            out.push_str(&format!("text({text:?})"));
        }
    } else if node.is_comment() {
        out.push_str(&format!("comment({:?})", node.text().unwrap_or("").trim()));
    } else if let Some(pi) = node.pi() {
        out.push_str(&format!("pi({}, {:?})", pi.target, pi.value));
    }
}

fn canonical_text(xml: &str) -> String {
    let document = roxmltree::Document::parse(xml).expect("well-formed XML");
    let mut out = String::new();
    for child in document.root().children() {
        canonical(child, &mut out);
    }
    out
}

/// The raw text of the first element child of `node`, or "" when it has none.
fn first_element_text<'a>(text: &'a str, node: Option<roxmltree::Node>) -> &'a str {
    node.and_then(|n| n.children().find(|c| c.is_element()))
        .map_or("", |e| &text[e.range()])
}

#[test]
fn every_official_xml_patch_case_passes() {
    let Some(path) = common::shared_fixture(
        "FHIR_XML_PATCH_TESTS",
        "fhir-test-cases/r4/patch/xml-patch-tests.xml",
        "it is `r4/patch/xml-patch-tests.xml` of HL7's fhir-test-cases repository \
         (github.com/FHIR/fhir-test-cases, Apache-2.0)",
    ) else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap();
    let document = roxmltree::Document::parse(&text).unwrap();
    let mut failures = Vec::new();
    let mut cases = 0;
    for case in document
        .root_element()
        .children()
        .filter(|c| c.has_tag_name("case"))
    {
        cases += 1;
        let name = case.attribute("name").unwrap_or("?");
        let child = |tag: &str| case.children().find(|c| c.tag_name().name() == tag);
        let target = first_element_text(&text, child("target"));
        let diff = &text[child("patch").expect("every case has a patch").range()];
        let outcome = Diff::parse(diff.as_bytes()).and_then(|d| d.apply_to_text(target));
        match (child("error"), outcome) {
            (Some(_), Err(_)) => {}
            (Some(error), Ok(patched)) => failures.push(format!(
                "{name}: expected the error '{}', got {patched}",
                error.attribute("message").unwrap_or("")
            )),
            (None, Err(e)) => failures.push(format!("{name}: {e}")),
            (None, Ok(patched)) => {
                let expected = first_element_text(&text, child("patched"));
                if canonical_text(&patched) != canonical_text(expected) {
                    failures.push(format!(
                        "{name}:\n  expected {}\n  got      {}",
                        canonical_text(expected),
                        canonical_text(&patched)
                    ));
                }
            }
        }
    }
    assert!(cases >= 25, "only {cases} cases: not the official file?");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- The operations and the XPath subset beyond the official cases ----------------------------

fn patched(target: &str, diff: &str) -> Result<String, XmlPatchError> {
    Diff::parse(diff.as_bytes())?.apply_to_text(target)
}

fn assert_patched(target: &str, diff: &str, expected: &str) {
    let result = patched(target, diff).unwrap_or_else(|e| panic!("{diff}: {e}"));
    assert_eq!(canonical_text(&result), canonical_text(expected), "{diff}");
}

const LIST: &str = r#"<list xmlns="urn:l" xmlns:q="urn:q"><item n="1">a</item><item n="2">b</item><q:item/></list>"#;

#[test]
fn add_puts_content_before_after_or_first() {
    assert_patched(
        LIST,
        r#"<diff xmlns="urn:l"><add sel="list/item[2]" pos="before"><item n="1.5"/></add></diff>"#,
        r#"<list xmlns="urn:l" xmlns:q="urn:q"><item n="1">a</item><item n="1.5"/><item n="2">b</item><q:item/></list>"#,
    );
    assert_patched(
        LIST,
        r#"<diff xmlns="urn:l"><add sel="list/item[@n='2']" pos="after"><item n="2.5"/></add></diff>"#,
        r#"<list xmlns="urn:l" xmlns:q="urn:q"><item n="1">a</item><item n="2">b</item><item n="2.5"/><q:item/></list>"#,
    );
    assert_patched(
        LIST,
        r#"<diff xmlns="urn:l"><add sel="list" pos="prepend"><item n="0"/></add></diff>"#,
        r#"<list xmlns="urn:l" xmlns:q="urn:q"><item n="0"/><item n="1">a</item><item n="2">b</item><q:item/></list>"#,
    );
}

#[test]
fn prefixes_are_the_diffs_and_unprefixed_names_take_its_default_namespace() {
    // `p` is the diff's own prefix for the target's `urn:q`.
    assert_patched(
        LIST,
        r#"<diff xmlns:p="urn:q" xmlns:l="urn:l"><remove sel="l:list/p:item"/></diff>"#,
        r#"<list xmlns="urn:l" xmlns:q="urn:q"><item n="1">a</item><item n="2">b</item></list>"#,
    );
    // Without a default namespace in the diff, `list` is in no namespace: nothing matches.
    assert!(matches!(
        patched(LIST, r#"<diff><remove sel="list/item[1]"/></diff>"#),
        Err(XmlPatchError::Unapplicable(_))
    ));
    // An undeclared prefix is a malformed diff.
    assert!(matches!(
        patched(LIST, r#"<diff><remove sel="z:list"/></diff>"#),
        Err(XmlPatchError::Malformed(_))
    ));
}

#[test]
fn namespaces_are_added_replaced_and_removed() {
    assert_patched(
        LIST,
        r#"<diff xmlns="urn:l"><replace sel="list/namespace::q">urn:q2</replace></diff>"#,
        r#"<list xmlns="urn:l" xmlns:q="urn:q2"><item n="1">a</item><item n="2">b</item><q:item/></list>"#,
    );
    // Still used by <q:item>: refused.
    assert!(patched(
        LIST,
        r#"<diff xmlns="urn:l"><remove sel="list/namespace::q"/></diff>"#
    )
    .is_err());
    assert_patched(
        r#"<a xmlns:u="urn:u"/>"#,
        r#"<diff><remove sel="a/namespace::u"/></diff>"#,
        r#"<a/>"#,
    );
    assert_patched(
        r#"<a/>"#,
        r#"<diff xmlns:v="urn:v"><add sel="a" type="@v:w">1</add></diff>"#,
        r#"<a xmlns:v="urn:v" v:w="1"/>"#,
    );
}

#[test]
fn remove_takes_the_white_space_around_with_ws() {
    let target = "<a>\n  <b/>\n  <c/>\n</a>";
    let result = patched(target, r#"<diff><remove sel="a/b" ws="after"/></diff>"#).unwrap();
    assert_eq!(result, "<a>\n  <c/>\n</a>");
    let result = patched(target, r#"<diff><remove sel="a/c" ws="both"/></diff>"#).unwrap();
    assert_eq!(result, "<a>\n  <b/></a>");
    // ws names white space that must be there.
    assert!(patched(
        "<a><b/></a>",
        r#"<diff><remove sel="a/b" ws="before"/></diff>"#
    )
    .is_err());
}

#[test]
fn what_cannot_be_applied_or_is_no_diff_is_refused() {
    let unapplicable = [
        r#"<diff><remove sel="a"/></diff>"#,   // the root element
        r#"<diff><remove sel="a/b"/></diff>"#, // two nodes
        r#"<diff><remove sel="a/c"/></diff>"#, // none
        r#"<diff><replace sel="a/b[1]">text</replace></diff>"#, // an element by text
        r#"<diff><add sel="a" pos="after"><z/></add></diff>"#, // a second root
        r#"<diff><add sel="a/b[1]" type="@x">2</add></diff>"#, // an attribute there already
    ];
    for diff in unapplicable {
        assert!(
            matches!(
                patched(r#"<a><b x="1"/><b/></a>"#, diff),
                Err(XmlPatchError::Unapplicable(_))
            ),
            "{diff}"
        );
    }
    let malformed = [
        r#"<diff></diff>"#,
        r#"<diff><move sel="a"/></diff>"#,
        r#"<diff><remove/></diff>"#,
        r#"<diff><remove sel="a//b"/></diff>"#,
        r#"<diff><add sel="a" pos="inside"><b/></add></diff>"#,
        r#"<diff><add sel="a" type="@x" pos="before">1</add></diff>"#,
        r#"<diff><remove sel="a/b[1]" ws="around"/></diff>"#,
        r#"<diff><remove sel="a/b[1]"><b/></remove></diff>"#,
        r#"<diff><remove sel="a"></diff>"#,
        r#"<!DOCTYPE d [<!ENTITY e "x">]><diff><remove sel="a/b[1]"/></diff>"#,
    ];
    for diff in malformed {
        assert!(
            matches!(
                patched(r#"<a><b x="1"/><b/></a>"#, diff),
                Err(XmlPatchError::Malformed(_))
            ),
            "{diff}"
        );
    }
}

#[test]
fn selectors_cover_the_rfc_subset() {
    let document = roxmltree::Document::parse(
        r#"<doc xmlns="http://hl7.org/fhir" a="1"><foo t="1">one</foo><foo t="2"><bar>b</bar></foo><x:foo xmlns:x="urn:x" xml:id="k"/>text<!--c--><?p v?></doc>"#,
    )
    .unwrap();
    let dom = Dom::from_document(&document).unwrap();
    let ns = |prefix: Option<&str>| match prefix {
        None | Some("f") => Some(FHIR_NS.to_owned()),
        Some("x") => Some("urn:x".to_owned()),
        _ => None,
    };
    let select = |selector: &str| Selector::parse(selector, &ns).unwrap().select(&dom);
    assert_eq!(select("f:doc/f:foo").len(), 2);
    assert_eq!(select("/doc/foo[2]"), select("doc/foo[@t='2']"));
    assert_eq!(select("doc/foo[bar=\"b\"]"), select("doc/foo[2]"));
    assert_eq!(select("doc/foo[.='one']"), select("doc/foo[1]"));
    assert_eq!(select("doc/foo[bar]"), select("doc/foo[2]"));
    assert_eq!(select("doc/x:*"), select("id('k')"));
    assert_eq!(select("doc/*").len(), 3);
    assert!(select("doc/foo[1][@t='2']").is_empty());
    assert!(matches!(select("doc/@a")[..], [Hit::Attribute(_, 0)]));
    assert!(matches!(&select("doc/x:foo/namespace::x")[..], [Hit::Namespace(_, p)] if p == "x"));
    assert_eq!(select("doc/text()").len(), 1);
    assert_eq!(select("doc/comment()[1]").len(), 1);
    assert_eq!(select("doc/processing-instruction('p')").len(), 1);
    assert!(select("doc/processing-instruction('q')").is_empty());
    for outside in [
        "doc//foo",
        "doc/@a/b",
        "doc/following-sibling::foo",
        "doc/foo[last()]",
        "count(doc)",
        "doc/y:foo",
        "doc/foo[@t='1]",
    ] {
        assert!(Selector::parse(outside, &ns).is_err(), "{outside}");
    }
}

// ---- Through the HTTP API, on both stores ----------------------------------------------------

const XML_PATCH: &str = "application/xml-patch+xml";
const FHIR_XML: &str = "application/fhir+xml";

fn de_vries() -> Value {
    patient()
        .identifier("http://example.org/fhir/mrn", "xp-4411")
        .family("de Vries")
        .given("Joost")
        .set("gender", "male")
        .set("birthDate", "1971-11-30")
        .json()
}

async fn send(
    server: &common::TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> signaal::client::Reply {
    server
        .client
        .send(method, path, headers, Some(body.as_bytes().to_vec()))
        .await
        .unwrap()
}

/// Sets the gender and adds a second given name after the family name.
const DIFF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<diff xmlns="http://hl7.org/fhir">
  <replace sel="Patient/gender/@value">female</replace>
  <add sel="Patient/name/family[@value='de Vries']" pos="after"><given value="Marit"/></add>
  <remove sel="Patient/name/given[@value='Joost']"/>
</diff>"#;

both_stores!(xml_patch_writes_the_next_version, |server| {
    let id = create(&server, &de_vries()).await;
    let reply = send(
        &server,
        "PATCH",
        &format!("Patient/{id}"),
        &[("Content-Type", XML_PATCH)],
        DIFF,
    )
    .await;
    let patched = expect_status(&reply, 200);
    assert_eq!(patched["gender"], "female");
    assert_eq!(patched["name"][0]["given"], serde_json::json!(["Marit"]));
    assert_eq!(patched["meta"]["versionId"], "2");
    assert_eq!(reply.header("etag"), Some("W/\"2\""));
    let read = expect_status(
        &server.client.get(&format!("Patient/{id}")).await.unwrap(),
        200,
    );
    assert_eq!(read["gender"], "female");
    assert_eq!(read["identifier"][0]["value"], "xp-4411");
});

both_stores!(xml_patch_answers_in_xml_when_asked, |server| {
    let id = create(&server, &de_vries()).await;
    let reply = send(
        &server,
        "PATCH",
        &format!("Patient/{id}"),
        &[("Content-Type", XML_PATCH), ("Accept", FHIR_XML)],
        r#"<diff><replace sel="f:Patient/f:birthDate/@value">1971-12-01</replace></diff>"#,
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.header("content-type").unwrap().starts_with(FHIR_XML));
    let patched = xml::parse(&reply.body).expect("an XML Patient");
    assert_eq!(patched["birthDate"], "1971-12-01");
    assert_eq!(patched["meta"]["versionId"], "2");
});

both_stores!(xml_patch_with_a_stale_if_match_is_412, |server| {
    let id = create(&server, &de_vries()).await;
    let path = format!("Patient/{id}");
    expect_status(
        &send(
            &server,
            "PATCH",
            &path,
            &[("Content-Type", XML_PATCH)],
            DIFF,
        )
        .await,
        200,
    );
    let stale = r#"<diff xmlns="http://hl7.org/fhir"><replace sel="Patient/gender/@value">other</replace></diff>"#;
    let reply = send(
        &server,
        "PATCH",
        &path,
        &[("Content-Type", XML_PATCH), ("If-Match", "W/\"1\"")],
        stale,
    )
    .await;
    expect_status(&reply, 412);
    let read = expect_status(&server.client.get(&path).await.unwrap(), 200);
    assert_eq!(read["gender"], "female");
    assert_eq!(read["meta"]["versionId"], "2");
    let reply = send(
        &server,
        "PATCH",
        &path,
        &[("Content-Type", XML_PATCH), ("If-Match", "W/\"2\"")],
        stale,
    )
    .await;
    assert_eq!(expect_status(&reply, 200)["meta"]["versionId"], "3");
});

both_stores!(a_failing_xml_patch_writes_nothing, |server| {
    let id = create(&server, &de_vries()).await;
    let path = format!("Patient/{id}");
    let refused = [
        // Matches nothing.
        (
            r#"<diff xmlns="http://hl7.org/fhir"><remove sel="Patient/deceasedBoolean"/></diff>"#,
            422,
        ),
        // Matches several nodes (an identifier has a system and a value).
        (
            r#"<diff xmlns="http://hl7.org/fhir"><remove sel="Patient/identifier/*"/></diff>"#,
            422,
        ),
        // Changes the id.
        (
            r#"<diff xmlns="http://hl7.org/fhir"><replace sel="Patient/id/@value">other-id</replace></diff>"#,
            422,
        ),
        // Changes the resource type.
        (
            r#"<diff xmlns="http://hl7.org/fhir"><replace sel="Patient"><Person><id value="x"/></Person></replace></diff>"#,
            422,
        ),
        // Makes no valid resource: an element Patient does not have.
        (
            r#"<diff xmlns="http://hl7.org/fhir"><add sel="Patient"><colour value="red"/></add></diff>"#,
            422,
        ),
        // Not a date.
        (
            r#"<diff xmlns="http://hl7.org/fhir"><replace sel="Patient/birthDate/@value">soon</replace></diff>"#,
            400,
        ),
        // An unknown operation, a malformed diff, no diff at all.
        (
            r#"<diff xmlns="http://hl7.org/fhir"><rename sel="Patient/gender"/></diff>"#,
            400,
        ),
        (
            r#"<diff xmlns="http://hl7.org/fhir"><remove sel="Patient/gender"></diff>"#,
            400,
        ),
        (
            r#"<diff xmlns="http://hl7.org/fhir"><remove sel="Patient//gender"/></diff>"#,
            400,
        ),
        ("", 400),
    ];
    for (diff, status) in refused {
        let reply = send(
            &server,
            "PATCH",
            &path,
            &[("Content-Type", XML_PATCH)],
            diff,
        )
        .await;
        assert!(
            reply.status == status || (status == 400 && reply.status == 422),
            "{diff}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        let outcome = reply.json();
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{diff}");
        assert!(outcome["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
    }
    let read = expect_status(&server.client.get(&path).await.unwrap(), 200);
    assert_eq!(read["meta"]["versionId"], "1", "nothing was written");
    assert_eq!(read["gender"], "male");
    // The failure is answered in XML when XML is asked for.
    let reply = send(
        &server,
        "PATCH",
        &path,
        &[("Content-Type", XML_PATCH), ("Accept", FHIR_XML)],
        r#"<diff xmlns="http://hl7.org/fhir"><remove sel="Patient/deceasedBoolean"/></diff>"#,
    )
    .await;
    assert_eq!(reply.status, 422);
    assert_eq!(
        xml::parse(&reply.body).unwrap()["resourceType"],
        "OperationOutcome"
    );
});

both_stores!(conditional_xml_patch_patches_the_one_match, |server| {
    let id = create(&server, &de_vries()).await;
    let reply = send(
        &server,
        "PATCH",
        "Patient?identifier=http://example.org/fhir/mrn|xp-4411",
        &[("Content-Type", XML_PATCH)],
        DIFF,
    )
    .await;
    let patched = expect_status(&reply, 200);
    assert_eq!(patched["id"], id.as_str());
    assert_eq!(patched["gender"], "female");
    let reply = send(
        &server,
        "PATCH",
        "Patient?identifier=http://example.org/fhir/mrn|nobody",
        &[("Content-Type", XML_PATCH)],
        DIFF,
    )
    .await;
    expect_status(&reply, 404);
});

both_stores!(the_capability_statement_lists_xml_patch, |server| {
    let statement = expect_status(&server.client.get("metadata").await.unwrap(), 200);
    let list = |name: &str| -> Vec<String> {
        statement[name]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    assert!(list("patchFormat").contains(&XML_PATCH.to_owned()));
    assert!(list("format").contains(&"xml".to_owned()));
    assert!(list("format").contains(&FHIR_XML.to_owned()));
});

// ---- Errors in XML when XML was asked for ----------------------------------------------------

/// The OperationOutcome of an XML error reply, after checking status and Content-Type.
fn xml_outcome(reply: &signaal::client::Reply, status: u16) -> Value {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.contains("xml")),
        "{:?}",
        reply.header("content-type")
    );
    let outcome = xml::parse(&reply.body).expect("an XML OperationOutcome");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    outcome
}

both_stores!(
    a_406_for_an_xml_client_is_an_xml_operation_outcome,
    |server| {
        let id = create(&server, &de_vries()).await;
        let path = format!("Patient/{id}");
        let get = |headers: &'static [(&'static str, &'static str)], path: String| {
            let client = server.client.clone();
            async move { client.send("GET", &path, headers, None).await.unwrap() }
        };
        // XML of another FHIR version: cannot be answered.
        let reply = get(
            &[("Accept", "application/fhir+xml; fhirVersion=3.0")],
            path.clone(),
        )
        .await;
        let outcome = xml_outcome(&reply, 406);
        assert!(outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("3.0"));
        // XML of this version is answered.
        let reply = get(
            &[("Accept", "application/fhir+xml; fhirVersion=4.0")],
            path.clone(),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert!(reply.header("content-type").unwrap().starts_with(FHIR_XML));
        // An unknown _format with an XML Accept, a bad _pretty with _format=xml.
        xml_outcome(
            &get(
                &[("Accept", "application/xml")],
                format!("{path}?_format=turtle"),
            )
            .await,
            406,
        );
        xml_outcome(
            &get(&[], format!("{path}?_format=xml&_pretty=maybe")).await,
            400,
        );
        // A JSON client still gets JSON.
        let reply = get(
            &[("Accept", "application/fhir+json; fhirVersion=1.0")],
            path.clone(),
        )
        .await;
        assert_eq!(reply.status, 406);
        assert_eq!(reply.json()["resourceType"], "OperationOutcome");
    }
);

both_stores!(a_body_of_another_fhir_version_is_415, |server| {
    let reply = send(
        &server,
        "POST",
        "Patient",
        &[("Content-Type", "application/fhir+json; fhirVersion=3.0")],
        &de_vries().to_string(),
    )
    .await;
    expect_status(&reply, 415);
});
