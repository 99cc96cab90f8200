//! Which writes go to the subscription outbox: the write pipeline marks them (`NewVersion::event`)
//! and the store adds the outbox row in the transaction of the version itself, so a committed
//! write is never missed by a subscription, also when the server dies right after the commit.
//! The subscription worker (`subscription::outbox`) reads the outbox.

/// The types no topic is about: the server's audit trail, written for every request and every
/// write. Every other write is recorded, so that a topic an administrator posts works at once
/// for any resource type.
pub const NOT_RECORDED: &[&str] = &["AuditEvent", "Provenance"];

pub fn records(rtype: &str) -> bool {
    !NOT_RECORDED.contains(&rtype)
}
