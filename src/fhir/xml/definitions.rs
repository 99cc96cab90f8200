//! What the XML format needs to know of each type, from the 4.0.1 StructureDefinitions
//! (`profiles/fhir-r4.elements.json`, made by `scripts/generate_definitions.py`): the elements of
//! every complex type, resource and backbone element in definition order (XML's element order),
//! their types (a choice's types in order), whether they repeat, which are XML attributes
//! (`Element.id`, `Extension.url`), and the JSON type of each primitive.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde_json::Value;

/// The JSON type a primitive's value takes (R4 json.html: `boolean`, numbers, strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Boolean,
    Integer,
    Decimal,
    String,
}

/// One element of a type.
#[derive(Debug)]
pub struct ElementDef {
    /// The name without `[x]` for a choice (`value`), else the element's name.
    pub stem: String,
    pub choice: bool,
    /// Type codes: primitive and complex type names, `Resource`, or a backbone element's
    /// definition name (`Bundle_Entry`).
    pub types: Vec<String>,
    pub repeats: bool,
    /// An XML attribute (`id` of an element, `url` of an extension) rather than an element.
    pub attribute: bool,
}

impl ElementDef {
    /// The JSON (and XML) name of this element with type `code`: `valueQuantity` for a
    /// choice, the element's own name otherwise.
    pub fn name_for(&self, code: &str) -> String {
        if self.choice {
            let mut name = self.stem.clone();
            let mut chars = code.chars();
            if let Some(first) = chars.next() {
                name.extend(first.to_uppercase());
                name.push_str(chars.as_str());
            }
            name
        } else {
            self.stem.clone()
        }
    }
}

/// The elements of one type, and each name they may take (choices expanded) with the index of
/// its element and the index of its type.
#[derive(Debug)]
pub struct TypeDef {
    pub elements: Vec<ElementDef>,
    names: HashMap<String, (usize, usize)>,
}

impl TypeDef {
    /// The element named `name` (a JSON property or XML element name): its index and type.
    pub fn lookup(&self, name: &str) -> Option<(usize, &ElementDef, &str)> {
        let &(index, type_index) = self.names.get(name)?;
        let element = &self.elements[index];
        Some((index, element, element.types[type_index].as_str()))
    }
}

pub struct Definitions {
    primitives: HashMap<String, JsonKind>,
    resources: HashSet<String>,
    types: HashMap<String, TypeDef>,
}

impl Definitions {
    pub fn get() -> &'static Definitions {
        &DEFINITIONS
    }

    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// The JSON kind of a primitive type; `None` for complex types.
    pub fn primitive(&self, name: &str) -> Option<JsonKind> {
        self.primitives.get(name).copied()
    }

    /// Whether `name` is a concrete resource type.
    pub fn is_resource(&self, name: &str) -> bool {
        self.resources.contains(name)
    }
}

static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(|| {
    let data: Value = serde_json::from_str(include_str!("../../../profiles/fhir-r4.elements.json"))
        .expect("profiles/fhir-r4.elements.json is valid JSON");
    load(&data).expect("profiles/fhir-r4.elements.json has the generator's shape")
});

fn load(data: &Value) -> Option<Definitions> {
    let primitives = data
        .get("primitives")?
        .as_object()?
        .iter()
        .map(|(name, kind)| {
            let kind = match kind.as_str()? {
                "boolean" => JsonKind::Boolean,
                "integer" => JsonKind::Integer,
                "number" => JsonKind::Decimal,
                _ => JsonKind::String,
            };
            Some((name.clone(), kind))
        })
        .collect::<Option<HashMap<_, _>>>()?;
    let resources = data
        .get("resources")?
        .as_array()?
        .iter()
        .map(|r| r.as_str().map(str::to_owned))
        .collect::<Option<HashSet<_>>>()?;
    let mut types = HashMap::new();
    for (name, rows) in data.get("types")?.as_object()? {
        let mut elements = Vec::new();
        let mut names = HashMap::new();
        for row in rows.as_array()? {
            let row = row.as_array()?;
            let full = row.first()?.as_str()?;
            let (stem, choice) = match full.strip_suffix("[x]") {
                Some(stem) => (stem.to_owned(), true),
                None => (full.to_owned(), false),
            };
            let element = ElementDef {
                stem,
                choice,
                types: row
                    .get(1)?
                    .as_array()?
                    .iter()
                    .map(|t| t.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?,
                repeats: row.get(2)?.as_bool()?,
                attribute: row.get(3)?.as_bool()?,
            };
            let index = elements.len();
            for (type_index, code) in element.types.iter().enumerate() {
                names.insert(element.name_for(code), (index, type_index));
            }
            elements.push(element);
        }
        types.insert(name.clone(), TypeDef { elements, names });
    }
    Some(Definitions {
        primitives,
        resources,
        types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_elements_come_in_definition_order() {
        let patient = Definitions::get().type_def("Patient").unwrap();
        let names: Vec<&str> = patient.elements.iter().map(|e| e.stem.as_str()).collect();
        assert_eq!(&names[..4], ["id", "meta", "implicitRules", "language"]);
        let (gender, _, _) = patient.lookup("gender").unwrap();
        let (birth_date, _, _) = patient.lookup("birthDate").unwrap();
        assert!(gender < birth_date);
    }

    #[test]
    fn choices_expand_to_one_name_per_type() {
        let observation = Definitions::get().type_def("Observation").unwrap();
        let (_, element, code) = observation.lookup("valueQuantity").unwrap();
        assert!(element.choice);
        assert_eq!(code, "Quantity");
        assert!(observation.lookup("value").is_none());
    }

    #[test]
    fn element_id_and_extension_url_are_attributes() {
        let defs = Definitions::get();
        let (_, url, _) = defs.type_def("Extension").unwrap().lookup("url").unwrap();
        assert!(url.attribute);
        let (_, id, _) = defs.type_def("Coding").unwrap().lookup("id").unwrap();
        assert!(id.attribute);
        let (_, resource_id, code) = defs.type_def("Patient").unwrap().lookup("id").unwrap();
        assert!(!resource_id.attribute);
        assert_eq!(code, "id");
        assert_eq!(defs.primitive("decimal"), Some(JsonKind::Decimal));
        assert_eq!(defs.primitive("positiveInt"), Some(JsonKind::Integer));
        assert_eq!(defs.primitive("Quantity"), None);
    }

    #[test]
    fn backbone_elements_and_content_references_name_their_definition() {
        let defs = Definitions::get();
        let (_, entry, code) = defs.type_def("Bundle").unwrap().lookup("entry").unwrap();
        assert!(entry.repeats);
        assert_eq!(code, "Bundle_Entry");
        let (_, _, item) = defs
            .type_def("Questionnaire_Item")
            .unwrap()
            .lookup("item")
            .unwrap();
        assert_eq!(item, "Questionnaire_Item");
    }
}
