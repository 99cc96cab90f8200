//! SMART App Launch for people, through HTTP as a browser and an app drive it: the
//! authorization code flow with PKCE, standalone and EHR launch, public and confidential apps,
//! id_tokens, refresh tokens and their revocation; `user/` scopes confined to a practitioner's
//! caseload (the patients of their CareTeams); and every attack's counterpart of
//! `tests/auth_attacks.rs`: code replay, PKCE downgrade, redirect_uri mismatch, open redirect,
//! CSRF, one user's token used for another's patients, user enumeration.

#[macro_use]
mod common;

use common::auth::*;
use common::expect_status;
use common::smart::*;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::Value;

const USER_READ: &str = "user/*.rs";

secured!(
    a_coach_logs_in_and_sees_only_the_patients_of_their_care_teams,
    |s| {
        let admin = caseloads(&s).await;
        let token = person_token(&s, "coach-app", USER_READ, "coach1", None).await;
        assert_eq!(token["token_type"], "Bearer");
        assert!(token["patient"].is_null(), "no patient context was asked");
        let coach = access(&token);
        assert_eq!(observation_subjects(&s, &coach).await, vec!["Patient/p1"]);
        let patients = expect_status(&s.call(&coach, "GET", "Patient", None).await, 200);
        assert_eq!(ids(&patients), vec!["Patient/p1"]);
        expect_status(&s.call(&coach, "GET", "Patient/p1", None).await, 200);
        expect_status(&s.call(&coach, "GET", "Patient/p2", None).await, 404);
        expect_status(&s.call(&coach, "GET", "Patient/p3", None).await, 404);
        // Resources in no patient's compartment are theirs to read (their own Practitioner)…
        expect_status(&s.call(&coach, "GET", "Practitioner/c1", None).await, 200);
        // …and the worklist holds their caseload only.
        let worklist = expect_status(
            &s.call(&coach, "GET", "Practitioner/c1/$worklist", None)
                .await,
            200,
        );
        assert!(ids(&worklist).contains(&"Patient/p1".to_owned()));
        assert!(!ids(&worklist).contains(&"Patient/p2".to_owned()));
        // Joining a CareTeam widens the caseload at the next request.
        let team = serde_json::json!({"resourceType": "CareTeam", "id": "t3", "status": "active",
        "subject": {"reference": "Patient/p3"},
        "participant": [{"member": {"reference": "Practitioner/c1"}}]});
        expect_status(
            &s.call(&admin, "PUT", "CareTeam/t3", Some(&team)).await,
            201,
        );
        assert_eq!(
            observation_subjects(&s, &coach).await,
            vec!["Patient/p1", "Patient/p3"]
        );
        // Every request is audited with the person behind the app.
        let events = audit_events_until(&s, &admin, "patient=p1", |entries| {
            entries
                .iter()
                .any(|e| e["resource"]["agent"][0]["who"]["reference"] == "Practitioner/c1")
        })
        .await;
        let event = events["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["agent"][0]["who"]["reference"] == "Practitioner/c1")
            .unwrap();
        assert_eq!(
            event["resource"]["agent"][1]["who"]["identifier"]["value"],
            "coach-app"
        );
        // And the log-in itself.
        log_in_audited(&s, &admin, &["'coach1'", "logged in"]).await;
    }
);

secured!(a_user_token_writes_only_within_the_caseload, |s| {
    caseloads(&s).await;
    let token = person_token(&s, "coach-app", "user/Observation.cruds", "coach1", None).await;
    let coach = access(&token);
    posts_a_vital_sign(&s, &coach, "p1", 201).await;
    posts_a_vital_sign(&s, &coach, "p2", 403).await;
});

secured!(a_patient_logs_in_and_sees_their_own_record, |s| {
    caseloads(&s).await;
    let token = person_token(
        &s,
        "coach-app",
        "launch/patient patient/*.rs",
        "patient2",
        None,
    )
    .await;
    assert_eq!(token["patient"], "p2");
    let own = access(&token);
    assert_eq!(observation_subjects(&s, &own).await, vec!["Patient/p2"]);
    expect_status(&s.call(&own, "GET", "Patient/p1", None).await, 404);
    // user/ scopes of a patient are their own record too.
    let user = access(&person_token(&s, "coach-app", USER_READ, "patient2", None).await);
    assert_eq!(observation_subjects(&s, &user).await, vec!["Patient/p2"]);
});

secured!(a_practitioner_picks_a_patient_of_their_caseload, |s| {
    caseloads(&s).await;
    let request = authorization_request(&s, "coach-app", "launch/patient patient/*.rs").await;
    let (page, c) = log_in(&s, &request, "coach1").await;
    let page = text(&page);
    assert!(page.contains("value=\"p1\""), "p1 is offered: {page}");
    assert!(
        !page.contains("value=\"p2\"") && !page.contains("value=\"p3\""),
        "only the caseload is offered"
    );
    assert!(
        page.contains("lang=\"nl\"") && page.contains("lang=\"en\""),
        "Dutch and English"
    );
    // A patient outside the caseload, forged into the form, is refused.
    let back = redirected(&consent(&s, &request, "allow", Some("p2"), Some(&c)).await);
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert!(param(&back, "code").is_none());
    // Picking p1 binds the token to p1.
    let token = person_token(
        &s,
        "coach-app",
        "launch/patient patient/*.rs",
        "coach1",
        Some("p1"),
    )
    .await;
    assert_eq!(token["patient"], "p1");
    assert_eq!(
        observation_subjects(&s, &access(&token)).await,
        vec!["Patient/p1"]
    );
});

secured!(an_ehr_launch_passes_its_patient_to_the_app, |s| {
    caseloads(&s).await;
    let host = access(&person_token(&s, "coach-app", USER_READ, "coach1", None).await);
    let launch = |patient: &'static str| {
        let host = host.clone();
        let s = &s;
        async move {
            let body = format!("patient={patient}");
            s.server
                .client
                .send(
                    "POST",
                    &format!("{}/auth/launch", origin(s)),
                    &[
                        ("authorization", &format!("Bearer {host}")),
                        ("content-type", "application/x-www-form-urlencoded"),
                    ],
                    Some(body.into_bytes()),
                )
                .await
                .unwrap()
        }
    };
    // Not for a patient the host cannot see.
    expect_status(&launch("p2").await, 404);
    let made = launch("p1").await;
    assert_eq!(made.status, 200, "{}", text(&made));
    let id = made.json()["launch"].as_str().unwrap().to_owned();
    let (code, verifier) = code_for(
        &s,
        "coach-app",
        "launch patient/*.rs",
        "coach1",
        &[("launch", &id)],
        None,
    )
    .await;
    let token = redeem(&s, "coach-app", &code, &verifier).await.json();
    assert_eq!(token["patient"], "p1");
    assert!(token["scope"]
        .as_str()
        .unwrap()
        .split(' ')
        .any(|w| w == "launch"));
    // A launch is used once, and another user's caseload does not hold its patient.
    let (_, challenge) = pkce();
    let launched = |id: &str| {
        authorize_url(
            &s,
            "coach-app",
            "launch patient/*.rs",
            &challenge,
            &[("launch", id)],
        )
    };
    let again = get(&s, &launched(&id)).await;
    assert_eq!(
        param(&redirected(&again), "error").as_deref(),
        Some("invalid_request")
    );
    let id = launch("p1").await.json()["launch"]
        .as_str()
        .unwrap()
        .to_owned();
    let request = start(&s, &launched(&id)).await;
    let reply = try_log_in(&s, &request, "coach2", PASSWORD).await;
    assert_eq!(
        param(&redirected(&reply), "error").as_deref(),
        Some("access_denied")
    );
});

secured!(openid_fhiruser_gives_a_signed_id_token, |s| {
    caseloads(&s).await;
    let (code, verifier) = code_for(
        &s,
        "coach-app",
        "openid fhirUser user/*.rs",
        "coach1",
        &[("nonce", "n-42")],
        None,
    )
    .await;
    let token = redeem(&s, "coach-app", &code, &verifier).await.json();
    let id_token = token["id_token"].as_str().expect("an id_token");
    let jwks = get(&s, &format!("{}/auth/jwks", origin(&s))).await.json();
    let key = &jwks["keys"][0];
    assert_eq!(key["alg"], "RS256");
    let decoding =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["coach-app"]);
    validation.set_issuer(&[s.server.base.as_str()]);
    let claims = decode::<Value>(id_token, &decoding, &validation)
        .expect("valid id_token")
        .claims;
    assert_eq!(
        claims["fhirUser"],
        format!("{}/Practitioner/c1", s.server.base)
    );
    assert_eq!(claims["sub"], "coach1");
    assert_eq!(claims["nonce"], "n-42");
    // Without openid there is none.
    let plain = person_token(&s, "coach-app", USER_READ, "coach1", None).await;
    assert!(plain["id_token"].is_null());
});

secured!(refresh_tokens_rotate_and_revocation_ends_them, |s| {
    caseloads(&s).await;
    let token = person_token(&s, "coach-app", "offline_access user/*.rs", "coach1", None).await;
    let first = token["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let renewed = refresh(&s, "coach-app", &first).await;
    assert_eq!(renewed.status, 200, "{}", text(&renewed));
    let renewed = renewed.json();
    let second = renewed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second, "rotated");
    assert_eq!(
        refresh(&s, "coach-app", &first).await.json()["error"],
        "invalid_grant",
        "the old one is spent"
    );
    let current = access(&renewed);
    expect_status(&s.call(&current, "GET", "Patient/p1", None).await, 200);
    // A refresh token of another app is not this app's to use.
    register_app(&s, "other-app", USER_READ, true).await;
    let stolen = refresh(&s, "other-app", &second).await;
    assert_eq!(stolen.json()["error"], "invalid_grant");
    // Revoking ends the grant: the refresh token and the access tokens.
    let revoked = post_form(
        &s,
        "/auth/revoke",
        &[("token", &second), ("client_id", "coach-app")],
        None,
    )
    .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(
        s.call(&current, "GET", "Patient/p1", None).await.status,
        401
    );
    assert_eq!(
        refresh(&s, "coach-app", &second).await.json()["error"],
        "invalid_grant"
    );
    // Revoking an access token ends its grant too.
    let other = person_token(&s, "coach-app", "offline_access user/*.rs", "coach1", None).await;
    let revoked = post_form(
        &s,
        "/auth/revoke",
        &[("token", &access(&other)), ("client_id", "coach-app")],
        None,
    )
    .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(
        s.call(&access(&other), "GET", "Patient/p1", None)
            .await
            .status,
        401
    );
    assert_eq!(
        refresh(&s, "coach-app", other["refresh_token"].as_str().unwrap())
            .await
            .json()["error"],
        "invalid_grant"
    );
});

secured!(
    removing_a_user_or_changing_their_password_ends_their_tokens,
    |s| {
        caseloads(&s).await;
        let token = person_token(&s, "coach-app", "offline_access user/*.rs", "coach1", None).await;
        let hash = signaal::auth::password::hash("another long secret").unwrap();
        assert!(s
            .clients
            .set_password("coach1", &hash, signaal::fhir::datetime::now_ms() + 1)
            .await
            .unwrap());
        assert_eq!(
            s.call(&access(&token), "GET", "Patient/p1", None)
                .await
                .status,
            401
        );
        let refreshed = refresh(&s, "coach-app", token["refresh_token"].as_str().unwrap()).await;
        assert_eq!(refreshed.json()["error"], "invalid_grant");
        let token = person_token(&s, "coach-app", "offline_access user/*.rs", "coach2", None).await;
        expect_status(
            &s.call(&access(&token), "GET", "Patient/p2", None).await,
            200,
        );
        assert!(s
            .clients
            .remove_user("coach2", signaal::fhir::datetime::now_ms())
            .await
            .unwrap());
        assert_eq!(
            s.call(&access(&token), "GET", "Patient/p2", None)
                .await
                .status,
            401
        );
    }
);

secured!(a_confidential_app_authenticates_with_its_key, |s| {
    caseloads(&s).await;
    register_app(&s, "clinic-app", USER_READ, false).await;
    let (code, verifier) = code_for(&s, "clinic-app", USER_READ, "coach1", &[], None).await;
    // client_id alone is not enough for a confidential app.
    let bare = redeem(&s, "clinic-app", &code, &verifier).await;
    assert_eq!(bare.status, 401);
    assert_eq!(bare.json()["error"], "invalid_client");
    let (code, verifier) = code_for(&s, "clinic-app", USER_READ, "coach1", &[], None).await;
    let assertion = sign_rs384("rsa-1", &s.claims("clinic-app"));
    let mut form = code_grant(&code, &verifier);
    form.extend([
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &assertion),
    ]);
    let reply = post_form(&s, "/auth/token", &form, None).await;
    assert_eq!(reply.status, 200, "{}", text(&reply));
    assert_eq!(
        observation_subjects(&s, &access(&reply.json())).await,
        vec!["Patient/p1"]
    );
    // An app gets no client_credentials token.
    let backend = s
        .exchange(&sign_rs384("rsa-1", &s.claims("clinic-app")), USER_READ)
        .await;
    assert_eq!(backend.status, 400);
});

secured!(discovery_advertises_app_launch, |s| {
    let config = get(
        &s,
        &format!("{}/.well-known/smart-configuration", s.server.base),
    )
    .await
    .json();
    assert_eq!(
        config["authorization_endpoint"],
        format!("{}/auth/authorize", origin(&s))
    );
    assert_eq!(
        config["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    for grant in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(config["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == grant));
    }
    for capability in [
        "launch-standalone",
        "launch-ehr",
        "client-public",
        "sso-openid-connect",
        "permission-offline",
        "permission-user",
        "context-standalone-patient",
    ] {
        assert!(
            config["capabilities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == capability),
            "{capability}"
        );
    }
    let openid = get(
        &s,
        &format!("{}/.well-known/openid-configuration", s.server.base),
    )
    .await
    .json();
    assert_eq!(openid["jwks_uri"], format!("{}/auth/jwks", origin(&s)));
});

// ---- Attacks ----

secured!(
    a_code_is_redeemed_once_and_a_replay_revokes_its_tokens,
    |s| {
        caseloads(&s).await;
        let (code, verifier) = code_for(
            &s,
            "coach-app",
            "offline_access user/*.rs",
            "coach1",
            &[],
            None,
        )
        .await;
        let first = redeem(&s, "coach-app", &code, &verifier).await;
        assert_eq!(first.status, 200);
        let token = first.json();
        expect_status(
            &s.call(&access(&token), "GET", "Patient/p1", None).await,
            200,
        );
        let replay = redeem(&s, "coach-app", &code, &verifier).await;
        assert_eq!(replay.status, 400);
        assert_eq!(replay.json()["error"], "invalid_grant");
        assert!(replay.json()["access_token"].is_null());
        // The replay ended what the code gave.
        assert_eq!(
            s.call(&access(&token), "GET", "Patient/p1", None)
                .await
                .status,
            401
        );
        let refreshed = refresh(&s, "coach-app", token["refresh_token"].as_str().unwrap()).await;
        assert_eq!(refreshed.json()["error"], "invalid_grant");
        // A made-up code gets nothing.
        assert_eq!(
            redeem(&s, "coach-app", "not-a-code", &verifier)
                .await
                .json()["error"],
            "invalid_grant"
        );
    }
);

secured!(pkce_is_required_and_cannot_be_downgraded, |s| {
    caseloads(&s).await;
    let (verifier, challenge) = pkce();
    // No challenge, plain, or a malformed one: refused at the authorize endpoint.
    for overrides in [
        vec![("code_challenge", ""), ("code_challenge_method", "")],
        vec![("code_challenge_method", "plain")],
        vec![
            ("code_challenge", verifier.as_str()),
            ("code_challenge_method", "plain"),
        ],
        vec![("code_challenge_method", "")],
        vec![("code_challenge", "short")],
    ] {
        let reply = get(
            &s,
            &authorize_url(&s, "coach-app", USER_READ, &challenge, &overrides),
        )
        .await;
        let back = redirected(&reply);
        assert_eq!(
            param(&back, "error").as_deref(),
            Some("invalid_request"),
            "{overrides:?}"
        );
        assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    }
    // A wrong verifier, or none, at the token endpoint: refused, and the code is spent.
    let (code, _) = code_for(&s, "coach-app", USER_READ, "coach1", &[], None).await;
    let (other_verifier, _) = pkce();
    assert_eq!(
        redeem(&s, "coach-app", &code, &other_verifier).await.json()["error"],
        "invalid_grant"
    );
    let (code, verifier) = code_for(&s, "coach-app", USER_READ, "coach1", &[], None).await;
    let missing = post_form(
        &s,
        "/auth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "coach-app"),
        ],
        None,
    )
    .await;
    assert_eq!(missing.json()["error"], "invalid_grant");
    assert_eq!(
        redeem(&s, "coach-app", &code, &verifier).await.json()["error"],
        "invalid_grant"
    );
});

secured!(an_unregistered_redirect_uri_is_never_redirected_to, |s| {
    caseloads(&s).await;
    let (verifier, challenge) = pkce();
    for evil in [
        "https://evil.example/callback",
        "https://coach.example/callback/../../evil",
        "https://coach.example/callback?next=https://evil.example",
        "https://coach.example/callbackx",
        "https://coach.example.evil.example/callback",
        "",
    ] {
        let reply = get(
            &s,
            &authorize_url(
                &s,
                "coach-app",
                USER_READ,
                &challenge,
                &[("redirect_uri", evil)],
            ),
        )
        .await;
        assert_eq!(reply.status, 400, "{evil}");
        assert!(
            reply.header("location").is_none(),
            "never redirected: {evil}"
        );
        assert!(text(&reply).contains("redirect_uri"));
    }
    // An unknown app is not redirected for either.
    let reply = get(
        &s,
        &authorize_url(&s, "no-such-app", USER_READ, &challenge, &[]),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(reply.header("location").is_none());
    // A code is redeemed only with the redirect_uri it was issued for.
    let (code, verifier2) = code_for(&s, "coach-app", USER_READ, "coach1", &[], None).await;
    let _ = verifier;
    let mismatch = post_form(
        &s,
        "/auth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://evil.example/callback"),
            ("client_id", "coach-app"),
            ("code_verifier", &verifier2),
        ],
        None,
    )
    .await;
    assert_eq!(mismatch.json()["error"], "invalid_grant");
    // aud must be this server: a token for another server is never asked for here.
    let reply = get(
        &s,
        &authorize_url(
            &s,
            "coach-app",
            USER_READ,
            &challenge,
            &[("aud", "https://other.example/fhir")],
        ),
    )
    .await;
    assert_eq!(
        param(&redirected(&reply), "error").as_deref(),
        Some("invalid_request")
    );
});

secured!(consent_comes_only_from_the_browser_that_logged_in, |s| {
    caseloads(&s).await;
    let (_, challenge) = pkce();
    // No state: refused (the app's CSRF protection must be there).
    let reply = get(
        &s,
        &authorize_url(&s, "coach-app", USER_READ, &challenge, &[("state", "")]),
    )
    .await;
    assert_eq!(
        param(&redirected(&reply), "error").as_deref(),
        Some("invalid_request")
    );
    let request = authorization_request(&s, "coach-app", USER_READ).await;
    // A consent forged before the log-in, or without the log-in's cookie, or with another: refused.
    let early = consent(&s, &request, "allow", None, None).await;
    assert_eq!(early.status, 400);
    let (_, c) = log_in(&s, &request, "coach1").await;
    for cookie in [None, Some("forged-cookie")] {
        let forged = consent(&s, &request, "allow", None, cookie).await;
        assert_eq!(forged.status, 403, "{cookie:?}");
        assert!(forged.header("location").is_none());
    }
    // The real browser's consent works once; the state is the app's, unchanged.
    allowed_code(&s, &request, &c, None).await;
    let again = consent(&s, &request, "allow", None, Some(&c)).await;
    assert_eq!(again.status, 400);
    // Denying sends access_denied back.
    let request = authorization_request(&s, "coach-app", USER_READ).await;
    let (_, c) = log_in(&s, &request, "coach1").await;
    let back = redirected(&consent(&s, &request, "deny", None, Some(&c)).await);
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert!(param(&back, "code").is_none());
});

secured!(one_users_token_never_reaches_another_users_patients, |s| {
    caseloads(&s).await;
    let coach2 = access(&person_token(&s, "coach-app", "user/*.cruds", "coach2", None).await);
    assert_eq!(observation_subjects(&s, &coach2).await, vec!["Patient/p2"]);
    expect_status(&s.call(&coach2, "GET", "Patient/p1", None).await, 404);
    expect_status(
        &s.call(&coach2, "GET", "Patient/p1/$everything", None).await,
        404,
    );
    let chained = expect_status(
        &s.call(
            &coach2,
            "GET",
            "Observation?subject:Patient.name=Appel",
            None,
        )
        .await,
        200,
    );
    assert!(ids(&chained).is_empty(), "not through a chain either");
    let has = expect_status(
        &s.call(
            &coach2,
            "GET",
            "Patient?_has:Observation:subject:status=final",
            None,
        )
        .await,
        200,
    );
    assert_eq!(ids(&has), vec!["Patient/p2"]);
    posts_a_vital_sign(&s, &coach2, "p1", 403).await;
    // A patient's token: their own record only.
    let patient = access(
        &person_token(
            &s,
            "coach-app",
            "launch/patient patient/*.cruds",
            "patient2",
            None,
        )
        .await,
    );
    expect_status(&s.call(&patient, "GET", "Patient/p1", None).await, 404);
    posts_a_vital_sign(&s, &patient, "p1", 403).await;
    // Another practitioner's worklist shows nothing of theirs.
    let worklist = expect_status(
        &s.call(&coach2, "GET", "Practitioner/c1/$worklist", None)
            .await,
        200,
    );
    assert!(!ids(&worklist).contains(&"Patient/p1".to_owned()));
});

secured!(log_in_tells_no_names_and_is_rate_limited, |s| {
    caseloads(&s).await;
    let request = authorization_request(&s, "coach-app", USER_READ).await;
    let wrong = try_log_in(&s, &request, "coach1", "wrong password!").await;
    let unknown = try_log_in(&s, &request, "nobody-here", "wrong password!").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(
        text(&unknown),
        text(&wrong),
        "the same page for an unknown name and a wrong password"
    );
    assert!(wrong.header("set-cookie").is_none());
    // After a few failures a name waits, known or not, even with the right password.
    for _ in 1..FREE_ATTEMPTS {
        for name in ["coach1", "nobody-here"] {
            try_log_in(&s, &request, name, "wrong password!").await;
        }
    }
    let locked = try_log_in(&s, &request, "coach1", PASSWORD).await;
    assert_eq!(locked.status, 429);
    let locked_unknown = try_log_in(&s, &request, "nobody-here", PASSWORD).await;
    assert_eq!(locked_unknown.status, 429);
    assert_eq!(text(&locked), text(&locked_unknown));
    // Other names are not held up.
    let (consent, _) = log_in(&s, &request, "coach2").await;
    assert_eq!(consent.status, 200);
});

const FREE_ATTEMPTS: u32 = signaal::auth::login_attempts::FREE_ATTEMPTS;

secured!(
    a_picked_patient_who_leaves_the_caseload_ends_the_token,
    |s| {
        let admin = caseloads(&s).await;
        let token = person_token(
            &s,
            "coach-app",
            "launch/patient patient/*.rs",
            "coach1",
            Some("p1"),
        )
        .await;
        let token = access(&token);
        assert_eq!(observation_subjects(&s, &token).await, vec!["Patient/p1"]);
        // coach1 leaves p1's team: the token picked for p1 is refused at its next request.
        let team = serde_json::json!({"resourceType": "CareTeam", "id": "t1", "status": "active",
        "subject": {"reference": "Patient/p1"},
        "participant": [{"member": {"reference": "Practitioner/c2"}}]});
        expect_status(
            &s.call(&admin, "PUT", "CareTeam/t1", Some(&team)).await,
            200,
        );
        expect_status(&s.call(&token, "GET", "Observation", None).await, 403);
        expect_status(&s.call(&token, "GET", "Patient/p1", None).await, 403);
    }
);

secured!(
    the_consent_page_lets_its_form_redirect_to_the_apps_origin_only,
    |s| {
        caseloads(&s).await;
        let request = authorization_request(&s, "coach-app", USER_READ).await;
        let (consent, _) = log_in(&s, &request, "coach1").await;
        // Browsers check `form-action` against the redirect that answers the consent form, so
        // the registered redirect URI's origin is allowed beside the server itself; nothing else.
        let policy = consent.header("content-security-policy").expect("a policy");
        let form_action = policy
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("form-action"))
            .expect("form-action");
        assert_eq!(form_action, "form-action 'self' https://coach.example");
        assert!(policy.contains("frame-ancestors 'none'"));
    }
);

/// Posts a vital-sign Observation of `patient` with `token`, and expects `status`.
async fn posts_a_vital_sign(s: &Secured, token: &str, patient: &str, status: u16) {
    let body = observation(patient, "vital-signs");
    expect_status(
        &s.call(token, "POST", "Observation", Some(&body)).await,
        status,
    );
}
