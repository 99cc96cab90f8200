//! FHIR search: the parameter definitions, index extraction on write, query parsing, and the
//! database-independent query model the stores execute.

pub mod definitions;
pub mod extract;
pub mod hierarchy;
pub mod index;
pub mod params;
pub mod query;
pub mod terminology;
