//! FHIR's XML representation (R4 xml.html) beside JSON, the server's one canonical form: XML
//! bodies are read into JSON (`read`), stored resources are written as XML (`write`), both
//! driven by the element definitions of the 4.0.1 StructureDefinitions (`definitions`), with the
//! narrative rules on XHTML read from XML (`narrative`). Decision record 0033. XML Patch
//! (RFC 5261) works on a mutable tree (`dom`) with selectors in its XPath subset (`xpath`):
//! `patch`, decision record 0040.

pub mod definitions;
pub mod dom;
pub mod narrative;
pub mod patch;
pub mod read;
pub mod write;
pub mod xpath;

pub use read::parse;
pub use write::{to_xml, WriteError};

/// The FHIR namespace of every element of a resource in XML.
pub const FHIR_NS: &str = "http://hl7.org/fhir";
/// The namespace of the narrative's XHTML.
pub const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";
/// XML Schema instance attributes (`xsi:schemaLocation`) carry no content and are ignored.
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
