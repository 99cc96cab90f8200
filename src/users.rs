//! `signaal user add|list|remove|passwd`: the people who log in with SMART App Launch, edited
//! in the database directly (it works while the server runs). A password is read from
//! `--password-file` or, without it, from standard input (one line), never from the command
//! line where `ps` shows it. A user may instead (or also) be linked to a person of the hospital's
//! OpenID Connect provider (`--oidc-issuer`, `--oidc-subject`; `signaal user link`): they then
//! log in there. A user added with a link and no `--password-file` has no local password.

use std::io::BufRead;

use clap::Subcommand;

use signaal::auth::password;
use signaal::fhir::id;
use signaal::store::users::UserRecord;

use crate::database_option::Database;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a person who logs in: a practitioner (a coach) or a patient.
    Add {
        #[command(flatten)]
        database: Database,
        /// The log-in name.
        #[arg(long)]
        name: String,
        /// Their FHIR resource: Practitioner/ID or Patient/ID (the fhirUser of their tokens).
        #[arg(long)]
        fhir_user: String,
        /// A file whose first line is the password (otherwise read from standard input, unless
        /// the user logs in through an OpenID Connect provider: --oidc-subject).
        #[arg(long)]
        password_file: Option<String>,
        /// The issuer of the OpenID Connect provider they log in through (the server's
        /// --oidc-issuer, exactly).
        #[arg(long, requires = "oidc_subject")]
        oidc_issuer: Option<String>,
        /// Their subject there: the `sub` of the provider's id_tokens.
        #[arg(long, requires = "oidc_issuer")]
        oidc_subject: Option<String>,
    },
    /// Link a user to a person of an OpenID Connect provider (replaces an earlier link).
    Link {
        #[command(flatten)]
        database: Database,
        name: String,
        /// The provider's issuer (the server's --oidc-issuer, exactly).
        #[arg(long)]
        oidc_issuer: String,
        /// The person's subject there (the `sub` of its id_tokens).
        #[arg(long)]
        oidc_subject: String,
    },
    /// List the users.
    List {
        #[command(flatten)]
        database: Database,
    },
    /// Remove a user: their tokens and refresh tokens stop working at once.
    Remove {
        #[command(flatten)]
        database: Database,
        name: String,
    },
    /// Set a user's password: their tokens and refresh tokens stop working at once.
    Passwd {
        #[command(flatten)]
        database: Database,
        name: String,
        #[arg(long)]
        password_file: Option<String>,
    },
}

pub async fn run(command: UserCommand) -> Result<(), String> {
    let now = signaal::fhir::datetime::now_ms();
    match command {
        UserCommand::Add {
            database,
            name,
            fhir_user,
            password_file,
            oidc_issuer,
            oidc_subject,
        } => {
            let fhir_user = fhir_user_of(&fhir_user)?;
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("--name must be non-empty without spaces".into());
            }
            let link = oidc_issuer.zip(oidc_subject);
            if let Some((issuer, subject)) = &link {
                check_link(issuer, subject)?;
            }
            let hash = if link.is_some() && password_file.is_none() {
                // No local password: no password matches this (it is no Argon2 hash).
                NO_PASSWORD.to_owned()
            } else {
                let secret = read_password(password_file.as_deref())?;
                password::acceptable(&secret)?;
                password::hash(&secret)?
            };
            let record = UserRecord {
                id: name,
                fhir_user,
                password: hash,
                since: now,
            };
            let store = database.open().await?;
            store.add_user(&record).await.map_err(|e| e.to_string())?;
            if let Some((issuer, subject)) = &link {
                if let Err(e) = store.link_oidc(&record.id, issuer, subject).await {
                    let _ = store.remove_user(&record.id, now).await;
                    return Err(e.to_string());
                }
            }
            println!("added user {} ({})", record.id, record.fhir_user);
            Ok(())
        }
        UserCommand::Link {
            database,
            name,
            oidc_issuer,
            oidc_subject,
        } => {
            check_link(&oidc_issuer, &oidc_subject)?;
            let store = database.open().await?;
            if store
                .link_oidc(&name, &oidc_issuer, &oidc_subject)
                .await
                .map_err(|e| e.to_string())?
            {
                println!("user {name} logs in as '{oidc_subject}' of {oidc_issuer}");
                Ok(())
            } else {
                Err(format!("no user '{name}'"))
            }
        }
        UserCommand::List { database } => {
            let store = database.open().await?;
            for u in store.users().await.map_err(|e| e.to_string())? {
                println!(
                    "{}\t{}\t{}",
                    u.id,
                    u.fhir_user,
                    signaal::fhir::datetime::format_instant(u.since)
                );
            }
            Ok(())
        }
        UserCommand::Remove { database, name } => {
            let store = database.open().await?;
            if store
                .remove_user(&name, now)
                .await
                .map_err(|e| e.to_string())?
            {
                println!("removed user {name}");
                Ok(())
            } else {
                Err(format!("no user '{name}'"))
            }
        }
        UserCommand::Passwd {
            database,
            name,
            password_file,
        } => {
            let secret = read_password(password_file.as_deref())?;
            password::acceptable(&secret)?;
            let hash = password::hash(&secret)?;
            let store = database.open().await?;
            if store
                .set_password(&name, &hash, now)
                .await
                .map_err(|e| e.to_string())?
            {
                println!("password of {name} changed");
                Ok(())
            } else {
                Err(format!("no user '{name}'"))
            }
        }
    }
}

/// The password column of a user who has no local password (logs in through a provider).
const NO_PASSWORD: &str = "!none";

fn check_link(issuer: &str, subject: &str) -> Result<(), String> {
    if !issuer.starts_with("https://") && !issuer.starts_with("http://") {
        return Err(format!(
            "--oidc-issuer '{issuer}' must be the provider's issuer URL"
        ));
    }
    if subject.is_empty() || subject.len() > 255 {
        return Err("--oidc-subject must be 1 to 255 characters (OpenID Connect Core 2)".into());
    }
    Ok(())
}

/// `Practitioner/ID` or `Patient/ID`.
fn fhir_user_of(text: &str) -> Result<String, String> {
    match text.split_once('/') {
        Some(("Practitioner" | "Patient", rid)) if id::is_valid(rid) => Ok(text.to_owned()),
        _ => Err(format!(
            "--fhir-user '{text}' must be Practitioner/ID or Patient/ID"
        )),
    }
}

fn read_password(file: Option<&str>) -> Result<String, String> {
    let line = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {path}: {e}"))?
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    Ok(line)
}
