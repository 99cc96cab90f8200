//! The compiled definitions: StructureDefinitions by url (core, Signaal's, packages', stored
//! ones), the ValueSets, CodeSystems and Questionnaires beside them, the expansions made so far,
//! and snapshots generated from differentials when a profile has none (`snapshot`).

use super::*;

/// The compiled definitions: StructureDefinitions by url, the ValueSets and CodeSystems of
/// packages, and the expansions made so far.
pub struct Definitions {
    pub(super) by_url: HashMap<String, Arc<StructureDefinition>>,
    /// `ImplementationGuide.global` of the packages: (type, profile) every resource of the
    /// type must conform to.
    pub(super) globals: Vec<(String, String)>,
    pub(super) value_sets: HashMap<String, Arc<Value>>,
    pub(super) code_systems: HashMap<String, Arc<CodeSystem>>,
    /// Questionnaires of packages (and supporting resources), by canonical url, for checking
    /// QuestionnaireResponses.
    pub(super) questionnaires: HashMap<String, Arc<Value>>,
    /// The snapshots of the definitions that are not core ones (Signaal's, packages', stored
    /// ones), as generated or given, so a later [`Definitions::extend`] can build on them: JSON
    /// text (a parsed snapshot takes several times the memory), parsed when one is needed.
    pub(super) raw: HashMap<String, Arc<str>>,
    pub(super) expansions: Mutex<HashMap<String, Arc<Result<Codes, String>>>>,
}

static CORE: LazyLock<Arc<Definitions>> = LazyLock::new(|| {
    let started = std::time::Instant::now();
    let extra = SIGNAAL_FILES
        .iter()
        .map(|f| serde_json::from_str(f).expect("Signaal's profiles are valid JSON"))
        .collect();
    let defs = Definitions::build(extra).expect("the built-in definitions compile");
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        definitions = defs.len(),
        "core validation definitions compiled"
    );
    Arc::new(defs)
});

/// Raw snapshots for snapshot generation: those made in this extension, those the definitions
/// extended hold, and the core ones.
pub(super) struct RawBases<'a> {
    pub(super) held: &'a HashMap<String, Arc<str>>,
    pub(super) made: HashMap<String, Vec<Value>>,
    /// Held and core snapshots parsed so far.
    pub(super) parsed: std::cell::RefCell<HashMap<String, Arc<Vec<Value>>>>,
}

impl<'a> RawBases<'a> {
    pub(super) fn new(held: &'a HashMap<String, Arc<str>>) -> Self {
        RawBases {
            held,
            made: HashMap::new(),
            parsed: Default::default(),
        }
    }
}

impl snapshot::Bases for RawBases<'_> {
    fn snapshot_of(&self, url: &str) -> Option<Vec<Value>> {
        let url = url.split('|').next().unwrap_or(url);
        if let Some(made) = self.made.get(url) {
            return Some(made.clone());
        }
        if let Some(parsed) = self.parsed.borrow().get(url) {
            return Some(parsed.as_ref().clone());
        }
        let text = match self.held.get(url) {
            Some(held) => held.as_ref(),
            None => core_snapshots(None).get(url)?.as_str(),
        };
        let parsed: Vec<Value> = serde_json::from_str(text).ok()?;
        self.parsed
            .borrow_mut()
            .insert(url.to_owned(), Arc::new(parsed.clone()));
        Some(parsed)
    }
}

impl Definitions {
    /// The core R4 definitions and Signaal's, compiled once per process.
    pub fn built_in() -> Arc<Definitions> {
        CORE.clone()
    }

    /// The core definitions plus `extra` conformance resources (StructureDefinitions, with or
    /// without snapshot; ValueSets; CodeSystems). An extra one with the url of a core one is
    /// ignored: the core wins.
    pub fn build(extra: Vec<Value>) -> Result<Definitions, DefinitionError> {
        let file = core_file();
        core_snapshots(Some(&file));
        let mut cache = ConstraintCache::default();
        let mut by_url = HashMap::new();
        for sd in file["StructureDefinition"].as_array().into_iter().flatten() {
            let compiled = StructureDefinition::compile(sd, &mut cache)?;
            by_url.insert(compiled.url.clone(), Arc::new(compiled));
        }
        let core = Definitions {
            by_url,
            globals: Vec::new(),
            value_sets: HashMap::new(),
            code_systems: HashMap::new(),
            questionnaires: HashMap::new(),
            raw: HashMap::new(),
            expansions: Mutex::new(HashMap::new()),
        };
        core.extend(extra)
    }

    /// These definitions plus `extra` conformance resources (as [`Definitions::build`]). Of
    /// two extra resources of one type with the same url, the later one is used.
    pub fn extend(&self, extra: Vec<Value>) -> Result<Definitions, DefinitionError> {
        let mut cache = ConstraintCache::default();
        let mut by_url = self.by_url.clone();
        let mut value_sets = self.value_sets.clone();
        let mut code_systems = self.code_systems.clone();
        let mut questionnaires = self.questionnaires.clone();
        let mut globals = self.globals.clone();
        let mut raw = self.raw.clone();
        let mut pending: HashMap<String, Value> = HashMap::new();
        for resource in extra {
            let url = resource
                .get("url")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let Some(url) = url else { continue };
            match resource.get("resourceType").and_then(Value::as_str) {
                Some("StructureDefinition") if !by_url.contains_key(&url) => {
                    pending.insert(url, resource);
                }
                Some("ValueSet") => {
                    value_sets.insert(url, Arc::new(resource));
                }
                Some("CodeSystem") => {
                    code_systems.insert(url, Arc::new(CodeSystem::from_json(&resource)));
                }
                Some("Questionnaire") => {
                    questionnaires.insert(url, Arc::new(resource));
                }
                Some("ImplementationGuide") => {
                    for global in resource
                        .get("global")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let (Some(t), Some(p)) = (
                            global.get("type").and_then(Value::as_str),
                            global.get("profile").and_then(Value::as_str),
                        ) {
                            globals.push((t.to_owned(), p.to_owned()));
                        }
                    }
                }
                _ => {}
            }
        }
        let mut bases = RawBases::new(&self.raw);
        let urls: Vec<String> = pending.keys().cloned().collect();
        for url in urls {
            with_snapshot(&url, &pending, &mut bases, &mut HashSet::new())?;
        }
        for (url, raw_sd) in &pending {
            let mut sd = resource_without_snapshot(raw_sd);
            let elements = bases.made.remove(url).unwrap_or_default();
            sd["snapshot"] = serde_json::json!({ "element": elements });
            let compiled = StructureDefinition::compile(&sd, &mut cache)?;
            by_url.insert(url.clone(), Arc::new(compiled));
            raw.insert(
                url.clone(),
                Arc::from(sd["snapshot"]["element"].to_string()),
            );
        }
        Ok(Definitions {
            by_url,
            globals,
            value_sets,
            code_systems,
            questionnaires,
            raw,
            expansions: Mutex::new(HashMap::new()),
        })
    }

    /// [`Definitions::extend`], leaving out each StructureDefinition that cannot be used (and
    /// those built on it) rather than failing: for resources that were accepted once and may
    /// no longer be usable (a package no longer loaded, a base deleted). Says why for each.
    pub fn extend_leaving_out(&self, mut extra: Vec<Value>) -> (Definitions, Vec<DefinitionError>) {
        let mut left_out = Vec::new();
        loop {
            match self.extend(extra.clone()) {
                Ok(defs) => return (defs, left_out),
                Err(e) => {
                    let before = extra.len();
                    let url = e.url().map(str::to_owned);
                    extra.retain(|r| {
                        r.get("resourceType").and_then(Value::as_str) != Some("StructureDefinition")
                            || url.is_some()
                                && r.get("url").and_then(Value::as_str) != url.as_deref()
                    });
                    left_out.push(e);
                    if extra.len() == before {
                        extra.retain(|r| {
                            r.get("resourceType").and_then(Value::as_str)
                                != Some("StructureDefinition")
                        });
                    }
                }
            }
        }
    }

    /// These definitions without the resources `gone` (definition type, url): for replacing
    /// stored ones.
    pub(super) fn without(&self, gone: &HashSet<(String, String)>) -> Definitions {
        fn keep<T: Clone>(
            map: &HashMap<String, T>,
            rtype: &str,
            gone: &HashSet<(String, String)>,
        ) -> HashMap<String, T> {
            map.iter()
                .filter(|(url, _)| !gone.contains(&(rtype.to_owned(), (*url).clone())))
                .map(|(url, v)| (url.clone(), v.clone()))
                .collect()
        }
        Definitions {
            by_url: keep(&self.by_url, "StructureDefinition", gone),
            raw: keep(&self.raw, "StructureDefinition", gone),
            value_sets: keep(&self.value_sets, "ValueSet", gone),
            code_systems: keep(&self.code_systems, "CodeSystem", gone),
            questionnaires: keep(&self.questionnaires, "Questionnaire", gone),
            globals: self.globals.clone(),
            expansions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether these definitions hold a resource of `rtype` (StructureDefinition, ValueSet,
    /// CodeSystem, Questionnaire) with canonical `url`, official ones included.
    pub fn holds(&self, rtype: &str, url: &str) -> bool {
        match rtype {
            "StructureDefinition" => self.by_url.contains_key(url),
            "ValueSet" => self.terminology().is_value_set(url),
            "CodeSystem" => self.terminology().is_code_system(url),
            "Questionnaire" => self.questionnaires.contains_key(url),
            _ => false,
        }
    }

    /// Compiles the StructureDefinition `sd` over these definitions (its snapshot generated when
    /// it has none) without adding it: whether it can be used, and if not, why.
    pub fn compile_one(&self, sd: &Value) -> Result<StructureDefinition, DefinitionError> {
        let url = sd
            .get("url")
            .and_then(Value::as_str)
            .ok_or(DefinitionError::NoUrl)?;
        let pending = HashMap::from([(url.to_owned(), sd.clone())]);
        let mut bases = RawBases::new(&self.raw);
        with_snapshot(url, &pending, &mut bases, &mut HashSet::new())?;
        let mut sd = resource_without_snapshot(sd);
        sd["snapshot"] =
            serde_json::json!({ "element": bases.made.remove(url).unwrap_or_default() });
        StructureDefinition::compile(&sd, &mut ConstraintCache::default())
    }

    /// The StructureDefinition with canonical `url` (a `|version` suffix is ignored).
    pub fn get(&self, url: &str) -> Option<&StructureDefinition> {
        let url = url.split('|').next().unwrap_or(url);
        self.by_url.get(url).map(Arc::as_ref)
    }

    /// The Questionnaire with canonical `url` (a `|version` suffix is ignored).
    pub fn questionnaire(&self, url: &str) -> Option<&Value> {
        let url = url.split('|').next().unwrap_or(url);
        self.questionnaires.get(url).map(Arc::as_ref)
    }

    /// The base definition of a type (`Observation`, `CodeableConcept`, `string`).
    pub fn core(&self, type_name: &str) -> Option<&StructureDefinition> {
        // Not `format!`: the walk asks this for nearly every element it visits.
        let mut url = String::with_capacity(CORE_PREFIX.len() + type_name.len());
        url.push_str(CORE_PREFIX);
        url.push_str(type_name);
        self.get(&url)
            .filter(|sd| sd.derivation == "specialization")
    }

    /// The `'static` name of a FHIR type.
    pub fn type_name(&self, name: &str) -> Option<&'static str> {
        TYPE_NAMES.get(name).copied()
    }

    /// Whether `suffix` (`Quantity`, `DateTime`) names a FHIR type in a choice element's name.
    pub fn is_type_suffix(&self, suffix: &str) -> bool {
        let mut lower = suffix.to_owned();
        if let Some(first) = lower.get_mut(0..1) {
            first.make_ascii_lowercase();
        }
        TYPE_NAMES.contains_key(suffix) || TYPE_NAMES.contains_key(&lower)
    }

    /// The number of StructureDefinitions held.
    pub fn len(&self) -> usize {
        self.by_url.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_url.is_empty()
    }

    pub fn terminology(&self) -> Offline<'_> {
        Offline {
            value_sets: &self.value_sets,
            code_systems: &self.code_systems,
        }
    }

    /// The codes of a ValueSet, expanded once.
    pub fn expansion(&self, url: &str) -> Result<Arc<Codes>, String> {
        if let Some(done) = self.expansions.lock().expect("not poisoned").get(url) {
            return done.as_ref().clone().map(Arc::new);
        }
        let result = Arc::new(self.terminology().expand(url));
        self.expansions
            .lock()
            .expect("not poisoned")
            .insert(url.to_owned(), result.clone());
        result.as_ref().clone().map(Arc::new)
    }
}

/// The top-level elements of a StructureDefinition but its snapshot, differential and text: what
/// compiling reads besides the snapshot.
pub(super) fn resource_without_snapshot(sd: &Value) -> Value {
    match sd.as_object() {
        Some(object) => Value::Object(
            object
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "snapshot" | "differential" | "text"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => sd.clone(),
    }
}

/// Generates the snapshot of `url` (one of `pending`) into `bases.made`, its bases first.
pub(super) fn with_snapshot(
    url: &str,
    pending: &HashMap<String, Value>,
    bases: &mut RawBases<'_>,
    visiting: &mut HashSet<String>,
) -> Result<(), DefinitionError> {
    if bases.made.contains_key(url) {
        return Ok(());
    }
    let Some(sd) = pending.get(url) else {
        return Ok(());
    };
    if !visiting.insert(url.to_owned()) {
        return Err(DefinitionError::Invalid {
            url: url.to_owned(),
            message: "its base definitions form a cycle".into(),
        });
    }
    if let Some(base) = sd.get("baseDefinition").and_then(Value::as_str) {
        let base = base.split('|').next().unwrap_or(base);
        if pending.contains_key(base) {
            with_snapshot(base, pending, bases, visiting)?;
        }
    }
    let elements = match sd.pointer("/snapshot/element").and_then(Value::as_array) {
        Some(elements) if !elements.is_empty() => elements.clone(),
        _ => {
            let generated =
                snapshot::generate(sd, bases).map_err(|message| DefinitionError::Invalid {
                    url: url.to_owned(),
                    message: format!("no snapshot can be generated: {message}"),
                })?;
            generated["snapshot"]["element"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    bases.made.insert(url.to_owned(), elements);
    Ok(())
}
