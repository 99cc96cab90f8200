//! `signaal import FILE|DIR… --database URL`: loads NDJSON files straight into a database, as
//! the server's `$import` does (`signaal::interaction::import::load`): every line validated and
//! written with update-as-create through the write pipeline, in batches, as the operator agent
//! (each write gets its Provenance). A directory means every `*.ndjson` file in it.
//!
//! Progress goes to stderr: a bar redrawn in place on a terminal, a plain line every few seconds
//! otherwise (a log). Each line not imported is printed as `FILE:LINE: message` (and, with
//! `--errors FILE`, written there as OperationOutcome NDJSON). The summary follows; the exit
//! code is non-zero when any line failed.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signaal::auth::{guard::GuardedStore, Grant};
use signaal::error::FhirError;
use signaal::interaction::import::{count_file_lines, load};
use signaal::write::Indexing;

/// Options of `signaal import`.
#[derive(clap::Args)]
pub struct ImportOptions {
    /// NDJSON files (one resource a line), or directories of `*.ndjson` files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// sqlite://PATH (created if missing) or postgres://USER@HOST:PORT/DB.
    #[arg(
        long,
        env = "SIGNAAL_DATABASE_URL",
        default_value = "sqlite://signaal.db"
    )]
    database: String,
    /// Also write each failed line's OperationOutcome to this NDJSON file.
    #[arg(long)]
    errors: Option<PathBuf>,
}

/// Failed lines printed on stderr; the rest are counted (and go to `--errors`).
const PRINTED: u64 = 100;

pub async fn run(options: ImportOptions) -> ExitCode {
    match import(&options).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("signaal import: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The files to read: the paths given, directories expanded to their `*.ndjson` files.
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "ndjson"))
                .collect();
            inside.sort();
            if inside.is_empty() {
                return Err(format!("{}: no .ndjson files", path.display()));
            }
            files.extend(inside);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    Ok(files)
}

/// Imports every file; the number of lines that failed.
async fn import(options: &ImportOptions) -> Result<u64, String> {
    let files = files(&options.paths)?;
    let mut total = 0;
    for file in &files {
        total += count_file_lines(file).await.map_err(|e| e.to_string())?;
    }
    let store = signaal::store::open(&options.database)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    // What is written is indexed with the search parameters the database holds.
    let registry = signaal::interaction::search_parameters::load(&*store)
        .await
        .map_err(|e| format!("cannot read the search parameters: {e}"))?;
    let indexing = Arc::new(Indexing::new(Arc::new(registry)));
    let guarded = GuardedStore::new(store.clone(), Grant::operator(), indexing.clone());
    let errors = match &options.errors {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => None,
    };
    let mut progress = Progress::new(total, errors);
    let started = Instant::now();
    // One pipeline over every file: a file's last batch is written while the next file's
    // first is checked.
    let mut failed = None;
    let mut loader = load::Loader::new(&guarded, &indexing)
        .await
        .map_err(|e| e.to_string())?;
    for file in &files {
        let name = file.display().to_string();
        let input = load::Input {
            name: &name,
            rtype: None,
        };
        let reader = match tokio::fs::File::open(file).await {
            Ok(f) => tokio::io::BufReader::with_capacity(1 << 20, f),
            Err(e) => {
                failed = Some(format!("{name}: {e}"));
                break;
            }
        };
        if let Err(e) = loader.load(&input, reader, &mut progress).await {
            // A failed write is of the batch before, which may be the previous file's last.
            let at = loader.failed_writing().unwrap_or(&name);
            failed = Some(format!("{at}: {e}"));
            break;
        }
    }
    let tally = match failed {
        None => loader
            .finish(&mut progress)
            .await
            .map_err(|e| format!("the last batch: {e}")),
        // What was read before the failure is written all the same.
        Some(e) => Err(loader.stop(e, &mut progress).await),
    };
    progress.finish();
    store.close().await;
    if let Some(mut errors) = progress.errors.take() {
        errors
            .flush()
            .map_err(|e| format!("writing the error file: {e}"))?;
    }
    let tally = tally?;
    let seconds = started.elapsed().as_secs_f64();
    let imported = tally.imported_total();
    let by_type: Vec<String> = tally
        .imported
        .iter()
        .map(|(rtype, n)| format!("{rtype} {n}"))
        .collect();
    eprintln!(
        "imported {imported} resources from {} file(s) in {seconds:.1} s ({:.0} resources/s){}",
        files.len(),
        imported as f64 / seconds.max(1e-9),
        if by_type.is_empty() {
            String::new()
        } else {
            format!(": {}", by_type.join(", "))
        }
    );
    if let Some(peak) = peak_rss() {
        eprintln!("peak RSS {peak}");
    }
    if tally.failed > 0 {
        eprintln!(
            "{} line(s) failed and were not imported{}",
            tally.failed,
            match &options.errors {
                Some(path) => format!(" (OperationOutcomes in {})", path.display()),
                None => String::new(),
            }
        );
    }
    if indexing.search_params_changed() {
        eprintln!(
            "the import changed the active SearchParameters: a running server picks them up \
             when restarted; run $reindex for data stored before"
        );
    }
    Ok(tally.failed)
}

/// The process's peak resident set size (Linux: `VmHWM` in `/proc/self/status`).
fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.trim_start_matches("VmHWM:").trim().to_owned())
}

/// Progress on stderr, and the failed lines.
struct Progress {
    total: u64,
    done: u64,
    failed: u64,
    started: Instant,
    drawn: Option<Instant>,
    terminal: bool,
    errors: Option<std::io::BufWriter<std::fs::File>>,
}

impl Progress {
    fn new(total: u64, errors: Option<std::io::BufWriter<std::fs::File>>) -> Self {
        Progress {
            total,
            done: 0,
            failed: 0,
            started: Instant::now(),
            drawn: None,
            terminal: std::io::stderr().is_terminal(),
            errors,
        }
    }

    /// How often the bar is redrawn, or the plain line written.
    fn interval(&self) -> Duration {
        if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        }
    }

    fn line(&self) -> String {
        let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let total = self.total.max(self.done);
        let failed = if self.failed > 0 {
            format!(", {} failed", self.failed)
        } else {
            String::new()
        };
        format!("{}/{total} lines ({rate:.0}/s{failed})", self.done)
    }

    fn draw(&mut self, force: bool) {
        if !force && self.drawn.is_some_and(|at| at.elapsed() < self.interval()) {
            return;
        }
        self.drawn = Some(Instant::now());
        let mut stderr = std::io::stderr();
        if self.terminal {
            let width = 30;
            let filled = (self.done.min(self.total) * width as u64)
                .checked_div(self.total)
                .map_or(width, |f| f as usize);
            let _ = write!(
                stderr,
                "\r\x1b[2Kimport [{}{}] {}",
                "#".repeat(filled),
                " ".repeat(width - filled),
                self.line()
            );
        } else {
            let _ = writeln!(stderr, "import: {}", self.line());
        }
        let _ = stderr.flush();
    }

    fn finish(&mut self) {
        self.draw(true);
        if self.terminal {
            eprintln!();
        }
    }
}

impl load::Observer for Progress {
    fn progress(&mut self, lines: u64) {
        self.done += lines;
        self.draw(false);
    }

    fn failed(&mut self, input: &str, error: load::LineError) -> Result<(), FhirError> {
        self.failed += 1;
        if self.failed <= PRINTED {
            if self.terminal {
                eprint!("\r\x1b[2K");
            }
            eprintln!("{}", error.summary(input));
            if self.failed == PRINTED {
                eprintln!("(further failed lines are counted, not printed)");
            }
            // The bar comes back at the next progress.
            self.drawn = None;
        }
        if let Some(errors) = &mut self.errors {
            let mut line = serde_json::to_vec(&error.outcome(input))
                .map_err(|e| FhirError::Internal(e.to_string()))?;
            line.push(b'\n');
            errors
                .write_all(&line)
                .map_err(|e| FhirError::Internal(format!("writing the error file: {e}")))?;
        }
        Ok(())
    }
}
