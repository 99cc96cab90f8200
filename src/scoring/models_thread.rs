//! The threads the scoring models run on, at a lower scheduling priority than the server's
//! requests (decision 0061).
//!
//! Scoring a patient parses the whole compartment and runs every model over it: milliseconds of
//! CPU for a long record, with nothing to wait for in between. Run on the async runtime's
//! worker threads (two on a two-core machine), that work held a worker for as long, and every
//! request waiting to be polled on it waited too: among them the members of a group commit,
//! which hold the one writer while they wait. Here the models run on threads of their own
//! whose nice value is raised ([`NICE`]), so the kernel gives a core to a request's thread
//! first and to the models when the requests leave it free. Under a steady load nothing
//! changes; under a burst of writes the scorer falls behind for a moment and then scores each
//! patient once for all the writes that queued it meanwhile.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

/// The nice value of the models' threads (0 is the default; 19 the lowest priority). At 10 a
/// busy model thread gets about a tenth of a core that a request's thread wants as well.
pub const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The queue of the models' threads, started on first use (`None`: they could not be
/// started, and the work runs on the caller's thread).
static THREADS: OnceLock<Option<Sender<Job>>> = OnceLock::new();

/// Runs `work` on a models' thread and answers its result; a panic in `work` is a panic here,
/// as if it had run on the caller's thread.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        // A caller that went away no longer wants the answer.
        let _ = answer.send(catch_unwind(AssertUnwindSafe(work)));
    });
    let job = match THREADS.get_or_init(start) {
        Some(threads) => match threads.send(job) {
            Ok(()) => None,
            Err(unsent) => Some(unsent.0),
        },
        None => Some(job),
    };
    if let Some(job) = job {
        job();
    }
    match answered.await {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => resume_unwind(panic),
        // Every job answers (a panic included) before it is dropped.
        Err(_) => unreachable!("a job of the models' threads ended without an answer"),
    }
}

/// Starts the models' threads: as many as the cores less one (the requests' share), at least
/// one.
fn start() -> Option<Sender<Job>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (sender, receiver) = channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    let mut started = 0;
    for n in 0..cores.saturating_sub(1).max(1) {
        let receiver = receiver.clone();
        let thread = std::thread::Builder::new()
            .name(format!("scoring-models-{n}"))
            .spawn(move || serve(&receiver));
        match thread {
            Ok(_) => started += 1,
            Err(e) => {
                tracing::warn!(error = %e, "a thread for the scoring models could not be started")
            }
        }
    }
    (started > 0).then_some(sender)
}

/// A models' thread: lowers its priority, then runs the jobs as they come.
fn serve(jobs: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Raises the calling thread's nice value to [`NICE`]. On Linux a thread's nice value is its
/// own (`setpriority` on the thread's id); raising it needs no privilege.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: plain system calls on the calling thread's own id; no memory is passed.
    let done = unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, NICE)
    };
    if done != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "the scoring models' thread keeps the default priority"
        );
    }
}

/// Elsewhere `setpriority` would lower the whole process: the threads keep the default.
#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_work_runs_on_a_models_thread_and_answers_its_result() {
        let name = run(|| std::thread::current().name().map(str::to_owned)).await;
        assert!(name.is_some_and(|n| n.starts_with("scoring-models-")));
    }

    #[tokio::test]
    async fn a_panic_in_the_work_is_a_panic_of_the_caller_and_the_threads_go_on() {
        let caller = tokio::spawn(run(|| -> u32 { panic!("a model failed") }));
        assert!(caller.await.unwrap_err().is_panic());
        assert_eq!(run(|| 6 * 7).await, 42);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_models_threads_run_at_a_lower_priority() {
        let nice = run(|| {
            // SAFETY: reads the calling thread's own nice value.
            unsafe {
                let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::getpriority(libc::PRIO_PROCESS, thread)
            }
        })
        .await;
        assert!(nice >= NICE, "nice value {nice}");
    }
}
