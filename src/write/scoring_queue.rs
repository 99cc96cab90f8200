//! Which writes queue a patient for risk scoring: the write pipeline queues the patient of a
//! scoring input in the same transaction as the write; the scorer (`scoring`) reads the queue.

/// The resource types whose writes change a patient's scores: a write of one queues the patient
/// in its compartment for re-scoring. RiskAssessment and Flag (what the scorer writes) are not
/// inputs, so the scorer's own writes never queue anyone.
pub const INPUT_TYPES: &[&str] = &[
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "Procedure",
    "Goal",
    "CarePlan",
    "CareTeam",
    "QuestionnaireResponse",
    "Consent",
];

pub fn is_input(rtype: &str) -> bool {
    INPUT_TYPES.contains(&rtype)
}
