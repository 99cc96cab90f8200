//! The pages a person sees while an app asks for access (SMART App Launch): log in, consent
//! (what the app will be able to see and do, in plain Dutch and English), and errors. Plain
//! HTML forms, no script: they work with a keyboard, a screen reader and without JavaScript.

use super::scope::{Context, Perm, Scope};

/// HTML-escapes text for element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A sentence in both languages: Dutch first, English under it.
fn both(nl: &str, en: &str) -> String {
    format!(
        "<span lang=\"nl\">{}</span><br><span lang=\"en\" class=\"en\">{}</span>",
        escape(nl),
        escape(en)
    )
}

fn page(title_nl: &str, title_en: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"nl\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} / {} — Signaal</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;\
         color:#111;background:#fff;line-height:1.5}}\
         .en{{color:#444}} label{{display:block;margin-top:1rem;font-weight:600}}\
         input,select{{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;\
         border:1px solid #555;border-radius:4px}}\
         button{{font-size:1rem;padding:.6rem 1.2rem;margin:1.2rem .5rem 0 0;border-radius:4px;\
         border:2px solid #0b4f8a;background:#0b4f8a;color:#fff;cursor:pointer}}\
         button.secondary{{background:#fff;color:#0b4f8a}}\
         button:focus,input:focus,select:focus{{outline:3px solid #f2a900;outline-offset:2px}}\
         .error{{border-left:4px solid #b00020;padding:.5rem 1rem;background:#fdecee}}\
         li{{margin:.4rem 0}}</style></head><body><main>\
         <h1>{}</h1>{body}</main></body></html>",
        escape(title_nl),
        escape(title_en),
        both(title_nl, title_en)
    )
}

/// The log-in page; `error` shows above the form (a wrong name or password: the same words
/// whichever it was).
/// With `provider` (its link and name), the person may also log in there (OpenID Connect).
pub fn login(
    action: &str,
    request: &str,
    app: &str,
    error: Option<(&str, &str)>,
    provider: Option<(&str, &str)>,
) -> String {
    let error = error
        .map(|(nl, en)| format!("<p class=\"error\" role=\"alert\">{}</p>", both(nl, en)))
        .unwrap_or_default();
    let provider = provider
        .map(|(href, name)| {
            format!(
                "<p><a href=\"{}\">{}</a></p><p>{}</p>",
                escape(href),
                both(
                    &format!("Inloggen met {name}"),
                    &format!("Log in with {name}")
                ),
                both(
                    "Of met een account van Signaal:",
                    "Or with a Signaal account:"
                ),
            )
        })
        .unwrap_or_default();
    page(
        "Inloggen",
        "Log in",
        &format!(
            "<p>{}</p>{error}{provider}<form method=\"post\" action=\"{}\">\
             <input type=\"hidden\" name=\"request\" value=\"{}\">\
             <label for=\"username\">Gebruikersnaam / User name</label>\
             <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
             <label for=\"password\">Wachtwoord / Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" \
             autocomplete=\"current-password\" required>\
             <button type=\"submit\">Inloggen / Log in</button></form>",
            both(
                &format!("De app '{app}' vraagt toegang tot gegevens in Signaal."),
                &format!("The app '{app}' asks for access to data in Signaal."),
            ),
            escape(action),
            escape(request),
        ),
    )
}

/// What a resource type holds, in plain words.
fn type_words(rtype: Option<&str>) -> (String, String) {
    let known = match rtype {
        None => Some(("alle gegevens", "all data")),
        Some("Patient") => Some(("persoonsgegevens", "personal details")),
        Some("Observation") => Some(("metingen en uitslagen", "measurements and test results")),
        Some("Condition") => Some(("aandoeningen", "conditions")),
        Some("Flag") => Some(("signaleringen", "flags (warnings)")),
        Some("RiskAssessment") => Some(("risico-inschattingen", "risk assessments")),
        Some("Goal") => Some(("doelen", "goals")),
        Some("CarePlan") => Some(("zorg- en actieplannen", "care and action plans")),
        Some("CareTeam") => Some(("zorgteams", "care teams")),
        Some("Encounter") => Some((
            "contacten, opnames en SEH-bezoeken",
            "encounters, admissions and ED visits",
        )),
        Some("MedicationRequest") => {
            Some(("voorschriften van medicijnen", "medication prescriptions"))
        }
        Some("Practitioner") => Some(("zorgverleners", "care providers")),
        _ => None,
    };
    match known {
        Some((nl, en)) => (nl.to_owned(), en.to_owned()),
        None => {
            let t = rtype.unwrap_or("*");
            (format!("gegevens van het type {t}"), format!("{t} records"))
        }
    }
}

fn perm_words(scope: &Scope) -> (String, String) {
    let mut nl = Vec::new();
    let mut en = Vec::new();
    for (perm, n, e) in [
        (Perm::Read, "inzien", "see"),
        (Perm::Search, "doorzoeken", "search"),
        (Perm::Create, "toevoegen", "add"),
        (Perm::Update, "wijzigen", "change"),
        (Perm::Delete, "verwijderen", "delete"),
    ] {
        if scope.has(perm) {
            nl.push(n);
            en.push(e);
        }
    }
    (join(&nl, "en"), join(&en, "and"))
}

fn join(words: &[&str], and: &str) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} {and} {last}", rest.join(", ")),
    }
}

/// One line per thing the app will be able to do.
pub fn scope_lines(scopes: &[Scope], words: &[&str], patient_user: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for scope in scopes {
        let (what_nl, what_en) = type_words(scope.rtype.as_deref());
        let (do_nl, do_en) = perm_words(scope);
        let (whose_nl, whose_en) = match (scope.context, patient_user) {
            (_, true) => ("van uzelf", "of your own"),
            (Context::User, false) => (
                "van de patiënten in uw zorgteams",
                "of the patients in your care teams",
            ),
            _ => ("van de gekozen patiënt", "of the chosen patient"),
        };
        let mut filter = String::new();
        if !scope.filter.is_empty() {
            filter = format!(
                " ({})",
                scope
                    .filter
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        lines.push(both(
            &format!("{what_nl} {whose_nl}{filter} {do_nl}"),
            &format!("{do_en} {what_en} {whose_en}{filter}"),
        ));
    }
    for word in words {
        let line = match *word {
            "openid" | "fhirUser" => Some((
                "weten wie u bent (uw naam en rol)",
                "know who you are (your name and role)",
            )),
            "offline_access" => Some((
                "toegang houden nadat u de app sluit, tot u die intrekt",
                "keep access after you close the app, until you revoke it",
            )),
            "online_access" => Some((
                "toegang houden zolang u ingelogd bent",
                "keep access while you are logged in",
            )),
            _ => None,
        };
        if let Some((nl, en)) = line {
            let text = both(nl, en);
            if !lines.contains(&text) {
                lines.push(text);
            }
        }
    }
    lines
}

/// The consent page: what the app asks, a patient picker when the app needs a patient chosen,
/// and allow or deny.
pub fn consent(
    action: &str,
    request: &str,
    app: &str,
    lines: &[String],
    picker: Option<&[(String, String)]>,
    patient: Option<&str>,
) -> String {
    let items: String = lines.iter().map(|l| format!("<li>{l}</li>")).collect();
    let mut chosen = String::new();
    if let Some(p) = patient {
        chosen = format!(
            "<p>{}</p>",
            both(
                &format!("Patiënt: Patient/{p}"),
                &format!("Patient: Patient/{p}")
            )
        );
    }
    let picker = match picker {
        Some(patients) if !patients.is_empty() => {
            let options: String = patients
                .iter()
                .map(|(id, name)| {
                    format!(
                        "<option value=\"{}\">{} (Patient/{})</option>",
                        escape(id),
                        escape(name),
                        escape(id)
                    )
                })
                .collect();
            format!(
                "<label for=\"patient\">Kies een patiënt / Choose a patient</label>\
                 <select id=\"patient\" name=\"patient\" required>{options}</select>"
            )
        }
        Some(_) => format!(
            "<p class=\"error\">{}</p>",
            both(
                "U heeft geen patiënten in uw zorgteams om te kiezen.",
                "You have no patients in your care teams to choose from."
            )
        ),
        None => String::new(),
    };
    page(
        "Toestemming geven",
        "Give consent",
        &format!(
            "<p>{}</p><ul>{items}</ul>{chosen}<form method=\"post\" action=\"{}\">\
             <input type=\"hidden\" name=\"request\" value=\"{}\">{picker}\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Toestaan / Allow</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\" \
             formnovalidate>Weigeren / Deny</button></form>",
            both(
                &format!("De app '{app}' kan dan:"),
                &format!("The app '{app}' will be able to:"),
            ),
            escape(action),
            escape(request),
        ),
    )
}

/// An error page: shown instead of redirecting when the redirect URI cannot be trusted.
pub fn error(nl: &str, en: &str) -> String {
    page(
        "Er ging iets mis",
        "Something went wrong",
        &format!("<p class=\"error\" role=\"alert\">{}</p>", both(nl, en)),
    )
}
