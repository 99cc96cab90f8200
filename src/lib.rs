//! Signaal: a FHIR R4 (4.0.1) server.
//!
//! A request flows one way: `http` (parse, negotiate, route) → `interaction` (FHIR semantics,
//! one module per interaction) → `write` (a resource becomes a stored version, in a
//! transaction; every writer goes through it) and `search` → `store` (SQLite or PostgreSQL).
//! `fhir` holds the rules of the specification that need neither HTTP nor storage; `search`
//! the parameter definitions, index extraction and query model; `terminology` the CodeSystems
//! and ValueSets search asks about (through a resolver the interaction passes in: search does
//! not read the store).

pub mod app;
pub mod auth;
pub mod bench;
pub mod client;
pub mod error;
pub mod fhir;
pub mod fhirpath;
pub mod http;
pub mod interaction;
pub mod jobs;
pub mod measure;
pub mod scoring;
pub mod search;
pub mod server;
pub mod store;
pub mod subscription;
pub mod terminology;
pub mod ucum;
pub mod validation;
pub mod write;
