//! A `signaal serve` process of the real binary, for tests that must kill it (`kill -9`) or run
//! several servers on one database as separate processes.

use std::time::{Duration, Instant};

/// A `signaal serve` process on a loopback port (the real binary, so it can be killed).
pub struct Process {
    child: std::process::Child,
    pub client: signaal::client::Client,
    log: std::path::PathBuf,
}

impl Process {
    pub async fn start(database_url: &str, dir: &std::path::Path) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let log = dir.join(format!("signaal-{port}.log"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_signaal"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database", database_url])
            .env_remove("SIGNAAL_BASE_URL")
            .env("SIGNAAL_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the signaal binary starts");
        let mut process = Process {
            child,
            client: signaal::client::Client::new(&format!("http://127.0.0.1:{port}/fhir")),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!("signaal exited with {status}: {}", process.log_text());
            }
            let health = format!("http://127.0.0.1:{port}/health");
            if process
                .client
                .get(&health)
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return process;
            }
            assert!(
                Instant::now() < deadline,
                "signaal did not start: {}",
                process.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL"); // SIGKILL on Unix: no chance to drain
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
