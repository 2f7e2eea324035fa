//! The server under test: one bench starts itself, or one already running.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::postgres::PgPoolOptions;

use crate::procfs::Process;

/// The server under test.
pub(super) struct Target {
    pub(super) client: reqwest::Client,
    pub(super) base: String,
    /// Known when bench started the server itself.
    pub(super) pid: Option<u32>,
}

impl Target {
    /// The server's resident memory: from /proc for a server bench started,
    /// else from the server's `/metrics`.
    pub(super) async fn rss_mib(&self) -> Option<f64> {
        let bytes = match self.pid {
            Some(pid) => Process::Id(pid).resident_bytes()? as f64,
            None => self.metric("process_resident_memory_bytes").await?,
        };
        Some(bytes / (1024.0 * 1024.0))
    }

    /// The CPU seconds the server used so far, read as `rss_mib` is.
    pub(super) async fn cpu_seconds(&self) -> Option<f64> {
        match self.pid {
            Some(pid) => Process::Id(pid).cpu_seconds(),
            None => self.metric("process_cpu_seconds_total").await,
        }
    }

    /// A series without labels from the server's `/metrics`.
    pub(super) async fn metric(&self, series: &str) -> Option<f64> {
        let url = format!("{}/metrics", self.base);
        let text = self.client.get(url).send().await.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }
}

/// A `sagaplane serve` child process on a fresh database.
pub(super) struct Server {
    pub(super) child: Child,
    pub(super) base: String,
    /// How it was started, to start it again the same way.
    command: Command,
}

/// The name a started server holds its partition leases under, the same
/// after a restart, as a node with a fixed `cluster.node_id` would.
const NODE_ID: &str = "bench";

impl Server {
    /// `env`: settings of this run (`SAGAPLANE_…` variables).
    pub(super) async fn start(
        server_url: &str,
        database_url: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{}/postgres", server_url.trim_end_matches('/')))
            .await
            .context("Failed to connect to PostgreSQL")?;
        let name = database_url.rsplit('/').next().unwrap_or_default();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--bench-database must be letters, digits and underscores");
        }
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("SAGAPLANE_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("SAGAPLANE_CLUSTER__NODE_ID", NODE_ID)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().context("Failed to start sagaplane serve")?;
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            command,
        };
        server.healthy().await?;
        Ok(server)
    }

    /// Kills the server with SIGKILL.
    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the killed server again, on the same port and database, and
    /// waits until it is healthy.
    pub(super) async fn restart(&mut self) -> anyhow::Result<()> {
        self.child = self
            .command
            .spawn()
            .context("Failed to start sagaplane serve again")?;
        self.healthy().await
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        for _ in 0..3_000 {
            let health = client.get(format!("{}/healthz", self.base)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("the server did not become healthy within 30 s")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
