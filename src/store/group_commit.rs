//! Group commit: the write transactions of many requests committed together, with one fsync.
//!
//! On a database with one writer (SQLite), each commit is an fsync, and the fsync, not the
//! work, bounds how many writes a second the server takes. Here a request's transaction is a
//! *member* of the group's one database transaction: it writes inside a savepoint of its own
//! (`SAVEPOINT member` … `RELEASE`), so a member that fails or goes away is rolled back to its
//! savepoint alone (`ROLLBACK TO`) and the others keep their writes. A member that finished
//! hands the group on and waits; the *committer* task commits the group once the members
//! already queued for it have had their turn (it queues on the same fair lock), and only then
//! answers them all: an acknowledged write has been fsynced, as before (record 0004).
//!
//! A batch Bundle acknowledges its entries together ([`acknowledged_together`]): its entries'
//! members do not wake the committer one by one, so they share a commit.
//!
//! A member that writes everything at once at its commit (a create: its rows and its
//! Provenance are held until then) joins a group already begun without a savepoint
//! ([`Savepoint::Whole`], decision 0055): should it fail or go away after it began writing,
//! the whole group is rolled back and its other members write again.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{Database, Transaction};
use tokio::sync::{oneshot, Mutex, Notify, OwnedMutexGuard};

use super::backend::{Backend, Sqlx};
use super::{StoreError, StoreResult};

/// What a member's wait for its group's commit ends with (every member gets a copy).
type Committed = Result<(), Uncommitted>;

/// Why a group's writes were not committed.
#[derive(Clone, Debug)]
enum Uncommitted {
    /// The commit (or a rollback it needed) failed: the error as text.
    Failed(String),
    /// A member written without a savepoint ([`Savepoint::Whole`]) failed or went away after
    /// it began writing, so the group's transaction was rolled back whole: the others' writes
    /// never reached the database and are written again (`StoreError::Conflict`, which
    /// `write::in_transaction` retries).
    RolledBack,
}

/// The open group: whoever holds it writes in it, one member at a time.
struct Group<B: Backend> {
    /// The database transaction of the group, begun by its first member.
    tx: Option<Transaction<'static, B::Db>>,
    /// The members whose writes are in `tx`, waiting for it to commit.
    members: Vec<oneshot::Sender<Committed>>,
    /// A member went away with its savepoint open (it failed, or its request was dropped):
    /// rolled back to it by whoever holds the group next.
    abandoned: bool,
    /// The member holding the group began its transaction and opened no savepoint: it is alone
    /// in the transaction, so undoing it is rolling the transaction back. (A savepoint costs
    /// more than its two statements: SQLite truncates its in-memory statement journal back to
    /// each statement's start by walking it from the savepoint's start, so a large member paid
    /// for its size at every statement; decision 0050.)
    bare: bool,
    /// A member written without a savepoint ([`Savepoint::Whole`]) went away or failed: the
    /// group's transaction can only be rolled back whole, by whoever holds the group next, and
    /// its members told to write again (decision 0055).
    spoiled: bool,
    /// A member of the group is a batch's entry ([`acknowledged_together`]): it learns of the
    /// commit only at the batch's end, too late to be written again, so no member joins this
    /// group without a savepoint.
    deferred: bool,
    /// Whether a member queued a patient for scoring: the scorer is woken once the group has
    /// committed (`Store::queue_signal`).
    queues: bool,
    /// What wakes the scorer.
    queued: Arc<Notify>,
}

impl<B: Backend> Group<B> {
    /// Rolls the group's transaction back whole, if one is open (its time limit disarmed
    /// first: the connection outlives the rollback).
    async fn roll_back(&mut self) {
        if let Some(mut tx) = self.tx.take() {
            let undone = match B::disarm(&mut tx).await {
                Ok(()) => tx.rollback().await,
                Err(e) => Err(e),
            };
            if let Err(e) = undone {
                tracing::error!(error = %e, "group commit: a failed write could not be rolled back");
            }
        }
    }

    /// Rolls an abandoned member back to its savepoint. When even that fails, the whole group
    /// is rolled back and its members told.
    async fn undo_abandoned(&mut self) {
        if std::mem::take(&mut self.spoiled) {
            self.abandoned = false;
            self.bare = false;
            // Nothing it queued for scoring stays: the members queue again when they write again.
            self.queues = false;
            self.roll_back().await;
            // Rolled back (or, failing that, never committed: the connection is not reused,
            // `Sqlite::open`'s `before_acquire`): the members write again.
            self.answer(Err(Uncommitted::RolledBack));
            return;
        }
        if !std::mem::take(&mut self.abandoned) {
            return;
        }
        if std::mem::take(&mut self.bare) {
            // Only the member's writes are in the transaction: rolling it back undoes them.
            self.roll_back().await;
            return;
        }
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        // A search stopped half-way leaves its time limit armed on the connection.
        let undone = match B::disarm(tx).await {
            Ok(()) => {
                match run::<B>(tx, "ROLLBACK TO SAVEPOINT member; RELEASE SAVEPOINT member").await {
                    // Its savepoint was never opened (it went away before its first statement
                    // ran) or already released with its last statement: nothing of it to undo.
                    Err(StoreError::Database(e)) if e.contains("no such savepoint") => Ok(()),
                    undone => undone,
                }
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = undone {
            tracing::error!(error = %e, "group commit: a failed write could not be rolled back");
            self.tx = None;
            self.answer(Err(Uncommitted::Failed(format!(
                "the write was rolled back with its group, after another write of the group \
                 could not be: {e}"
            ))));
        }
    }

    /// Commits the group, if one is open, and answers its members.
    async fn commit(&mut self) {
        self.undo_abandoned().await;
        if let Some(tx) = self.tx.take() {
            let committed = tx
                .commit()
                .await
                .map_err(|e| Uncommitted::Failed(e.to_string()));
            if std::mem::take(&mut self.queues) && committed.is_ok() {
                self.queued.notify_one();
            }
            self.answer(committed);
        }
    }

    fn answer(&mut self, committed: Committed) {
        self.deferred = false;
        for member in self.members.drain(..) {
            let _ = member.send(committed.clone());
        }
    }
}

/// Runs `statement` on `tx`.
async fn run<B: Backend>(tx: &mut Transaction<'static, B::Db>, statement: &str) -> StoreResult<()> {
    sqlx::Executor::execute(B::Db::connection(tx), statement).await?;
    Ok(())
}

/// A write transaction: not begun yet, a database transaction of its own, or a member of the
/// group.
pub(super) enum Writer<B: Backend> {
    /// Begun when it first needs the database ([`Writer::connection`]), in the group if there
    /// is one: what a request prepares before (a new resource's rows, its index entries, its
    /// JSON, its Provenance) is done before it takes the writer, while others write.
    ///
    /// Its flag: the statements about to begin it are all it writes, sent at its commit
    /// ([`Writer::writes_once`]).
    Unbegun(Arc<B>, Option<(Joiner<B>, Coming)>, bool),
    Alone(Transaction<'static, B::Db>),
    Grouped(Member<B>),
}

impl<B: Backend> Writer<B> {
    /// A transaction of `backend`, begun (or joining `group`) at its first statement.
    pub(super) fn unbegun(backend: Arc<B>, group: Option<&GroupCommit<B>>) -> Self {
        Writer::Unbegun(
            backend,
            group.map(|group| (group.joiner.clone(), group.coming.arrive())),
            false,
        )
    }

    /// Says that the transaction, not begun yet, writes everything at once now, at its commit
    /// (a create's rows and its Provenance, held until then): in a group it writes without a
    /// savepoint of its own ([`Savepoint::Whole`]). Nothing once it has begun.
    pub(super) fn writes_once(&mut self) {
        if let Writer::Unbegun(_, _, once) = self {
            *once = true;
        }
    }

    /// The connection the transaction writes on; begins the transaction (or waits for its
    /// turn in the group) the first time.
    pub(super) async fn connection(&mut self) -> StoreResult<&mut <B::Db as Database>::Connection> {
        if let Writer::Unbegun(backend, group, once) = self {
            let begun = match group {
                Some((group, _coming)) => Writer::Grouped(group.join(backend, *once).await?),
                None => Writer::Alone(backend.begin().await?),
            };
            *self = begun;
        }
        Ok(match self {
            Writer::Unbegun(..) => unreachable!("the transaction was just begun"),
            Writer::Alone(tx) => tx,
            Writer::Grouped(member) => member.connection(),
        })
    }

    /// On a backend that sends several statements in one call (`Backend::JOINS_STATEMENTS`), a
    /// member opens its savepoint with its first statement rather than by itself: this is that
    /// statement's lead (`SAVEPOINT member`), once, after [`Writer::connection`] joined the
    /// group; the caller sends it before its statement, in the same call.
    pub(super) fn lead(&mut self) -> Option<&'static str> {
        match self {
            Writer::Grouped(member) => member.lead(),
            _ => None,
        }
    }

    /// On such a backend, the statement that ends a member's writes (`RELEASE SAVEPOINT
    /// member`), for the caller to send after its last statement, in the same call; the commit
    /// then only hands the group on. `None` where the commit releases it (or nothing was
    /// opened).
    pub(super) fn release(&mut self) -> Option<&'static str> {
        match self {
            Writer::Grouped(member) => member.release(),
            _ => None,
        }
    }

    /// Commits; returns once the writes are durable. `queued` is woken after a commit that
    /// queued a patient for scoring (`queues`).
    pub(super) async fn commit(self, queues: bool, queued: &Notify) -> StoreResult<()> {
        match self {
            // Nothing was written: nothing to commit.
            Writer::Unbegun(..) => Ok(()),
            Writer::Alone(tx) => {
                tx.commit().await?;
                if queues {
                    queued.notify_one();
                }
                Ok(())
            }
            // The group wakes it once it has committed.
            Writer::Grouped(member) => member.commit(queues).await,
        }
    }
}

/// The group commit of a store: its open group and its committer task.
pub(super) struct GroupCommit<B: Backend> {
    joiner: Joiner<B>,
    coming: Arc<Arrivals>,
}

/// How long the committer waits at most for the write transactions still preparing (begun,
/// not yet in the group) before it commits without them.
const GATHER: Duration = Duration::from_millis(1);

/// The write transactions begun but not yet in the group: they are preparing their writes
/// (parsing, index entries, JSON) and join in a moment. The committer lets them in first, for
/// up to [`GATHER`]: a commit costs the writer's time (the log frames of every page the group
/// changed) and an fsync whatever the group's size, so on a busy server fewer, larger groups
/// leave more time to the writes themselves.
pub(super) struct Arrivals {
    preparing: AtomicUsize,
    joined: Notify,
}

impl Arrivals {
    fn arrive(self: &Arc<Self>) -> Coming {
        self.preparing.fetch_add(1, Ordering::Relaxed);
        Coming(self.clone())
    }

    /// Waits until no transaction is preparing, or [`GATHER`] has passed.
    async fn gathered(&self) {
        let deadline = tokio::time::Instant::now() + GATHER;
        while self.preparing.load(Ordering::Relaxed) > 0 {
            tokio::select! {
                _ = self.joined.notified() => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

/// One transaction preparing (see [`Arrivals`]); it has joined (or ended) when this is dropped.
pub(super) struct Coming(Arc<Arrivals>);

impl Drop for Coming {
    fn drop(&mut self) {
        self.0.preparing.fetch_sub(1, Ordering::Relaxed);
        self.0.joined.notify_one();
    }
}

/// What a transaction joins the group with.
pub(super) struct Joiner<B: Backend> {
    group: Arc<Mutex<Group<B>>>,
    /// Wakes the committer: a member finished, or went away.
    due: Arc<Notify>,
}

impl<B: Backend> Clone for Joiner<B> {
    fn clone(&self) -> Self {
        Joiner {
            group: self.group.clone(),
            due: self.due.clone(),
        }
    }
}

impl<B: Backend> GroupCommit<B> {
    /// Starts the committer (it ends when this is dropped). `queued` wakes the scorer after a
    /// commit that queued a patient.
    pub(super) fn start(queued: Arc<Notify>) -> Self {
        let group = Arc::new(Mutex::new(Group {
            tx: None,
            members: Vec::new(),
            abandoned: false,
            bare: false,
            spoiled: false,
            deferred: false,
            queues: false,
            queued,
        }));
        let due = Arc::new(Notify::new());
        let coming = Arc::new(Arrivals {
            preparing: AtomicUsize::new(0),
            joined: Notify::new(),
        });
        tokio::spawn(committer(
            Arc::downgrade(&group),
            due.clone(),
            coming.clone(),
        ));
        GroupCommit {
            joiner: Joiner { group, due },
            coming,
        }
    }
}

impl<B: Backend> Joiner<B> {
    /// A new member: waits for its turn in the group and opens its savepoint, or begins the
    /// group's transaction if none is open (the first member needs no savepoint). `once`: the
    /// member writes everything in the statements it is about to send, at its commit
    /// ([`Writer::writes_once`]); outside [`acknowledged_together`] it writes without a
    /// savepoint ([`Savepoint::Whole`]).
    pub(super) async fn join(&self, backend: &Arc<B>, once: bool) -> StoreResult<Member<B>> {
        // A batch's entries learn of their commits only at the batch's end, too late to be
        // written again: they keep their savepoints.
        let whole = once && TOGETHER.try_with(|_| ()).is_err();
        let mut group = self.group.clone().lock_owned().await;
        if !group.abandoned && !group.spoiled && group.tx.is_some() && B::JOINS_STATEMENTS {
            // Opened with the member's first statement (`Writer::lead`), if it needs one.
            group.bare = false;
            let savepoint = if whole && !group.deferred {
                Savepoint::Whole
            } else {
                Savepoint::ToOpen
            };
            return Ok(Member {
                group: Some(group),
                due: self.due.clone(),
                savepoint,
            });
        }
        // The rollback of an abandoned member, the group's `BEGIN` and the savepoint run to
        // their end even when this request goes away meanwhile: cut short, a rollback sent but
        // not finished leaves the abandoned member's writes in the group, and a `BEGIN` done
        // but not yet handed back (sqlx checks a custom `BEGIN IMMEDIATE` with one more call)
        // leaves the connection in a transaction that nothing ends, on which every later
        // `BEGIN` fails.
        let (backend, due) = (backend.clone(), self.due.clone());
        let (handed, taken) = oneshot::channel();
        tokio::spawn(async move {
            let savepoint = group.prepare(&backend).await;
            if let Err(unwanted) = handed.send((group, savepoint)) {
                // Its request went away meanwhile: the group is handed on, and committed (its
                // transaction may have just begun) if nobody else comes.
                drop(unwanted);
                due.notify_one();
            }
        });
        let savepoint = match taken.await {
            Ok((held, Ok(savepoint))) => {
                group = held;
                savepoint
            }
            Ok((_, Err(e))) => {
                // Whatever the group holds is committed without this member.
                self.due.notify_one();
                return Err(e);
            }
            Err(_) => {
                self.due.notify_one();
                return Err(StoreError::Database(
                    "the write could not join its group: its preparation failed".into(),
                ));
            }
        };
        Ok(Member {
            group: Some(group),
            due: self.due.clone(),
            savepoint,
        })
    }
}

impl<B: Backend> Group<B> {
    /// Makes the group ready for a new member: rolls an abandoned one back, then begins the
    /// group's transaction if none is open (the first member needs no savepoint), or opens the
    /// member's savepoint (or leaves it to the member's first statement, `Writer::lead`).
    async fn prepare(&mut self, backend: &B) -> StoreResult<Savepoint> {
        self.undo_abandoned().await;
        self.bare = self.tx.is_none();
        if self.bare {
            self.tx = Some(backend.begin().await?);
            return Ok(Savepoint::Bare);
        }
        if B::JOINS_STATEMENTS {
            // Opened with the member's first statement (`Writer::lead`).
            return Ok(Savepoint::ToOpen);
        }
        let tx = self
            .tx
            .as_mut()
            .expect("the group's transaction was just begun");
        run::<B>(tx, "SAVEPOINT member").await?;
        Ok(Savepoint::Open)
    }
}

impl<B: Backend> Drop for GroupCommit<B> {
    fn drop(&mut self) {
        // The committer wakes, finds the group gone and ends.
        self.joiner.due.notify_one();
    }
}

/// Commits the group each time a member is due, after the transactions about to join
/// ([`Arrivals`]) and the members already queued for the group (the lock is fair: they are
/// ahead of the committer).
async fn committer<B: Backend>(
    group: Weak<Mutex<Group<B>>>,
    due: Arc<Notify>,
    coming: Arc<Arrivals>,
) {
    loop {
        due.notified().await;
        if group.strong_count() == 0 {
            return;
        }
        coming.gathered().await;
        let Some(group) = group.upgrade() else {
            return;
        };
        group.lock().await.commit().await;
    }
}

/// One request's transaction inside the group: holds the group (and its connection) from
/// [`GroupCommit::join`] until [`Member::commit`].
pub(super) struct Member<B: Backend> {
    group: Option<OwnedMutexGuard<Group<B>>>,
    due: Arc<Notify>,
    savepoint: Savepoint,
}

/// Where a member's savepoint is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Savepoint {
    /// To be opened by its first statement (`Writer::lead`).
    ToOpen,
    /// Opened (or handed to a statement that opens it).
    Open,
    /// Handed to its last statement to release (`Writer::release`).
    Released,
    /// None: the member began the group's transaction (`Group::bare`).
    Bare,
    /// None: the member writes all it writes in one go at its commit (a create), after other
    /// members. Its savepoint would cost SQLite a copy of every page it is the first in the
    /// group to change (the savepoint journal, a fifth of the writer's instructions per
    /// create); without it, a failure or a departure after it began writing rolls the whole
    /// group back (`Group::spoiled`), and the other members write again. (Decision 0055.)
    Whole,
}

impl<B: Backend> Member<B> {
    fn lead(&mut self) -> Option<&'static str> {
        (self.savepoint == Savepoint::ToOpen).then(|| {
            self.savepoint = Savepoint::Open;
            "SAVEPOINT member"
        })
    }

    fn release(&mut self) -> Option<&'static str> {
        (B::JOINS_STATEMENTS && self.savepoint == Savepoint::Open).then(|| {
            self.savepoint = Savepoint::Released;
            "RELEASE SAVEPOINT member"
        })
    }

    /// The group's connection, to write on.
    pub(super) fn connection(&mut self) -> &mut <B::Db as Database>::Connection {
        self.group
            .as_mut()
            .and_then(|group| group.tx.as_mut())
            .expect("a member holds the group's open transaction until it commits")
    }

    /// Releases the member's savepoint, hands the group on and waits until the group has
    /// committed (inside [`acknowledged_together`], leaves the wait to it). `queues`: the
    /// member queued a patient for scoring.
    pub(super) async fn commit(mut self, queues: bool) -> StoreResult<()> {
        let mut group = self.group.take().expect("a member commits once");
        // Released by its last statement already, or never opened (nothing was written).
        if self.savepoint == Savepoint::Open {
            let tx = group.tx.as_mut().expect("a member's group is open");
            if let Err(e) = run::<B>(tx, "RELEASE SAVEPOINT member").await {
                group.abandoned = true;
                self.due.notify_one();
                return Err(e);
            }
        }
        // The members after it open savepoints: its writes are the group's now.
        group.bare = false;
        let (answer, committed) = oneshot::channel();
        group.members.push(answer);
        group.queues |= queues;
        let together = TOGETHER.try_with(|_| ()).is_ok();
        group.deferred |= together;
        drop(group);
        if together {
            let waiting = TOGETHER.with(|together| {
                let mut together = together.borrow_mut();
                together.push((self.due.clone(), committed));
                together.len()
            });
            // A long batch still commits now and then, so that it does not keep the writer.
            if waiting.is_multiple_of(TOGETHER_AT_MOST) {
                self.due.notify_one();
            }
            return Ok(());
        }
        self.due.notify_one();
        acknowledged(committed).await
    }
}

impl<B: Backend> Drop for Member<B> {
    fn drop(&mut self) {
        // Gone before it committed: its savepoint is rolled back by the next to hold the group,
        // and the committer is woken in case nobody else comes.
        if let Some(mut group) = self.group.take() {
            // Even one whose savepoint was never handed to a statement: its first statement
            // may have been a search stopped half-way, which leaves its time limit armed on the
            // connection (a progress handler that interrupts the next statement; when that is
            // a write, SQLite rolls back the whole group's transaction). The next holder
            // disarms it; its rollback then finds no savepoint: nothing of it to undo.
            if self.savepoint == Savepoint::Whole {
                group.spoiled = true;
            } else {
                group.abandoned = true;
            }
            drop(group);
            self.due.notify_one();
        }
    }
}

/// Waits for a member's group to commit.
async fn acknowledged(committed: oneshot::Receiver<Committed>) -> StoreResult<()> {
    match committed.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Uncommitted::RolledBack)) => Err(StoreError::Conflict(
            "the write's group was rolled back after another write of it failed; write it again"
                .into(),
        )),
        Ok(Err(Uncommitted::Failed(e))) => Err(StoreError::Database(format!(
            "the write could not be committed: {e}"
        ))),
        Err(_) => Err(StoreError::Database(
            "the write's group was dropped before it committed".into(),
        )),
    }
}

/// A member's commit still to be acknowledged, and the committer to wake for it.
type Waiting = (Arc<Notify>, oneshot::Receiver<Committed>);

/// How many commits a batch defers before it lets the committer commit them.
const TOGETHER_AT_MOST: usize = 64;

tokio::task_local! {
    /// The commits [`acknowledged_together`] waits for.
    static TOGETHER: RefCell<Vec<Waiting>>;
}

/// Runs `work` (the writes of a batch Bundle, each in its own transaction) so that its commits
/// are acknowledged together at the end, after one group commit, rather than each after its
/// own. `Ok` once all of them are durable; an error when one of their groups failed to commit.
/// Stores without group commit commit each transaction at once, as always.
pub async fn acknowledged_together<T>(work: impl Future<Output = T>) -> (T, StoreResult<()>) {
    let (output, pending) = TOGETHER
        .scope(RefCell::new(Vec::new()), async {
            let output = work.await;
            let pending = TOGETHER.with(|together| std::mem::take(&mut *together.borrow_mut()));
            (output, pending)
        })
        .await;
    (output, wait_all(pending).await)
}

/// Inside [`acknowledged_together`], waits until the commits so far are durable (before a
/// read that must see them); nothing to do elsewhere.
pub async fn acknowledge_so_far() -> StoreResult<()> {
    let pending = TOGETHER
        .try_with(|together| std::mem::take(&mut *together.borrow_mut()))
        .unwrap_or_default();
    wait_all(pending).await
}

async fn wait_all(pending: Vec<Waiting>) -> StoreResult<()> {
    for (due, _) in &pending {
        due.notify_one();
    }
    let mut result = Ok(());
    for (_, committed) in pending {
        if let Err(e) = acknowledged(committed).await {
            result = Err(e);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::search::index::IndexEntries;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Method, NewVersion, Store, StoreError, StoreResult};

    fn observation<'a>(id: &'a str, index: &'a IndexEntries) -> NewVersion<'a> {
        NewVersion {
            rtype: "Observation",
            id,
            version: 1,
            last_updated: 1000,
            method: Method::Post,
            content: Some("{}"),
            compartment: None,
            index,
            event: false,
            source: None,
        }
    }

    /// A create on its own: everything written at its commit (a member without a savepoint).
    fn create(
        store: &Arc<SqliteStore>,
        id: &'static str,
    ) -> tokio::task::JoinHandle<StoreResult<()>> {
        let store = store.clone();
        tokio::spawn(async move {
            let index = IndexEntries::default();
            let mut tx = store.begin().await?;
            tx.write(observation(id, &index), None).await?;
            tx.commit().await
        })
    }

    /// Decision 0055: a member written without a savepoint that fails rolls its whole group
    /// back; the members before it are told to write again (a conflict), and nothing of the
    /// group is stored.
    #[tokio::test]
    async fn a_failing_member_without_savepoint_rolls_its_group_back_for_all() {
        let (dir, url) = crate::store::scratch_sqlite("whole-member");
        let store = Arc::new(SqliteStore::open(&url).await.unwrap());
        let index = IndexEntries::default();
        // The first member holds the group from its read until its commit.
        let mut first = store.begin().await.unwrap();
        first.lock_current("Observation", "first").await.unwrap();
        first
            .write(observation("first", &index), None)
            .await
            .unwrap();
        // Two creates queue behind it, in this order, both of the same new resource: the
        // second's row breaks the unique key inside the group.
        let a = create(&store, "same");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b = create(&store, "same");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let first = first.commit().await;
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert!(b.is_err(), "the failing member fails");
        assert!(
            matches!(first, Err(StoreError::Conflict(_))),
            "the first member writes again: {first:?}"
        );
        assert!(
            matches!(a, Err(StoreError::Conflict(_))),
            "the member before the failing one writes again: {a:?}"
        );
        assert!(store.read("Observation", "first").await.unwrap().is_none());
        assert!(store.read("Observation", "same").await.unwrap().is_none());
        // Written again, each on its own, they are stored.
        create(&store, "same").await.unwrap().unwrap();
        let mut again = store.begin().await.unwrap();
        again
            .write(observation("first", &index), None)
            .await
            .unwrap();
        again.commit().await.unwrap();
        assert!(store.read("Observation", "first").await.unwrap().is_some());
        assert!(store.read("Observation", "same").await.unwrap().is_some());
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
