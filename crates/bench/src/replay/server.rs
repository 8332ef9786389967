//! The `serve` child process a replay runs against when no `--url` is given.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::BaseUrl;

/// How long `serve` may take to answer `/health` with 200.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `serve` may take to exit after SIGTERM before it is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `serve`; killed if dropped without [`ServeChild::stop`].
pub struct ServeChild {
    child: Child,
    pub url: String,
}

impl ServeChild {
    /// Starts `<binary> serve <args>` on a free local port and waits until `/health` is 200.
    pub async fn start(
        binary: Option<PathBuf>,
        args: impl Fn(u16) -> Vec<std::ffi::OsString>,
    ) -> anyhow::Result<Self> {
        let binary = match binary {
            Some(path) => path,
            None => std::env::current_exe().context("cannot locate this program to run serve")?,
        };
        let port = free_port()?;
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .args(args(port))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        // serve's own info lines would interleave with the progress line; warnings still show.
        if std::env::var_os("SWITCHYARD_LOG").is_none() {
            command.env("SWITCHYARD_LOG", "warn");
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {} serve", binary.display()))?;
        let mut server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        if let Err(err) = server.wait_healthy().await {
            server.stop().await;
            return Err(err);
        }
        Ok(server)
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let base = BaseUrl::parse(&self.url).await?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("serve exited during startup ({status}); its messages are above");
            }
            if let Ok((status, _)) = crate::http_get(&base, "/health").await
                && status.is_success()
            {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "serve at {} was not healthy within {STARTUP_TIMEOUT:?}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited in time. Never fails: this is cleanup.
    pub async fn stop(mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            // ESRCH (already gone) is fine.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            eprintln!("serve did not exit {SHUTDOWN_TIMEOUT:?} after SIGTERM; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// A port nobody listens on right now (the OS picks it; serve binds it moments later).
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free local port")?;
    Ok(listener.local_addr()?.port())
}
