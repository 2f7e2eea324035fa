//! The three-node fault test: three `sagaplane serve` processes on one
//! database, 2,000 sagas started by retrying clients through any of them,
//! while nodes are SIGKILLed at random (and started again) and the database
//! itself is restarted once. Then every saga must have ended as its input
//! dictates, no participant may have applied an effect twice, no history may
//! have a gap, and every command must have been published.
//!
//! The database is a PostgreSQL cluster of the test's own (`initdb` into a
//! temporary folder, on a port of its own), never the server other tests
//! share: that one is not the test's to restart. Without `initdb` the test is
//! skipped, saying why, unless `SAGAPLANE_REQUIRE_INITDB` is set (`.ci/run`
//! sets it). The faults follow a seeded schedule; the seed is printed, and
//! `SAGAPLANE_FAULT_SEED=<seed>` replays it (as far as timing allows).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

use crate::helpers::TempDir;
use crate::server::{
    assert_effects_as_dictated, assert_histories_whole, assert_no_effect_twice, cases,
    restart_port, start_retrying, Server, FAULT_ENV,
};

const NODES: usize = 3;
const SAGAS: usize = 2_000;
const CLIENTS: usize = 32;
const KILLS: usize = 8;

/// Besides [`FAULT_ENV`]: leases that move soon after a kill, and
/// connections enough for three nodes on one cluster.
const ENV: &[(&str, &str)] = &[
    ("SAGAPLANE_CLUSTER__LEASE_TTL_MS", "1500"),
    ("SAGAPLANE_DATABASE__MAX_CONNECTIONS", "8"),
];

/// A PostgreSQL cluster of the test's own: `initdb` into a temporary folder
/// (the data and the unix socket), listening on 127.0.0.1:`port` only.
/// Dropping it stops the server (immediately) and removes the folder.
struct Postgres {
    bin: PathBuf,
    /// Run the tools as the `postgres` user: the server refuses root.
    as_postgres: bool,
    port: u16,
    folder: TempDir,
}

/// The output of `id <args>`, a number.
fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().expect("`id` runs");
    assert!(out.status.success(), "id {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

impl Postgres {
    /// Makes the cluster and starts it; blocking.
    fn create(bin: PathBuf) -> Postgres {
        let folder = TempDir::new();
        let as_postgres = id(&["-u"]) == 0;
        if as_postgres {
            let (uid, gid) = (id(&["-u", "postgres"]), id(&["-g", "postgres"]));
            std::os::unix::fs::chown(&folder.0, Some(uid), Some(gid))
                .expect("the folder is given to postgres");
        }
        let cluster = Postgres {
            bin,
            as_postgres,
            port: restart_port(),
            folder,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--locale=C",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let settings = format!(
            "\n# The three-node fault test's own cluster.\n\
             port = {}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             max_connections = 200\n\
             fsync = off\n",
            cluster.port,
            cluster.folder.0.display(),
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("initdb wrote postgresql.conf");
        text.push_str(&settings);
        std::fs::write(&conf, text).expect("postgresql.conf is written");
        cluster.start();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.folder.0.join("data")
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn command(&self, tool: &str) -> Command {
        let tool = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(tool);
            c
        } else {
            Command::new(tool)
        };
        command
            .current_dir(&self.folder.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `tool` to its end; panics, with its output and the server's log,
    /// unless it succeeds.
    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool} cannot be run: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}\n{}{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default(),
        );
    }

    fn log(&self) -> PathBuf {
        self.folder.0.join("postgres.log")
    }

    fn pg_ctl(&self, action: &[&str]) {
        let data = self.data();
        let log = self.log();
        let mut args = vec!["-D", data.to_str().unwrap(), "-w", "-t", "60"];
        args.extend(["-l", log.to_str().unwrap()]);
        args.extend(action);
        self.run("pg_ctl", &args);
    }

    fn start(&self) {
        self.pg_ctl(&["start"]);
    }

    /// As a crash: no checkpoint; the next start recovers from the log.
    fn stop_immediately(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    /// The postmaster's PID while it runs (the first line of its PID file).
    fn pid(&self) -> Option<u32> {
        let file = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        file.lines().next()?.trim().parse().ok()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(pid) = self.pid() else { return };
        let data = self.data();
        let stopped = self
            .command("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-w", "-t", "20"])
            .args(["-m", "immediate", "stop"])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped && Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// One fault of the schedule, after a pause of `after_ms` from the last.
#[derive(Debug)]
enum Fault {
    /// SIGKILL node `node`, start it again `down_ms` later.
    Kill {
        node: usize,
        after_ms: u64,
        down_ms: u64,
    },
    /// Stop PostgreSQL at once (as a crash), start it again `down_ms` later.
    RestartDatabase { after_ms: u64, down_ms: u64 },
}

/// The `index`th fault: a kill of a random node, or at `restart_at` the
/// database's restart.
fn fault(rng: &mut fastrand::Rng, index: usize, restart_at: usize) -> Fault {
    if index == restart_at {
        Fault::RestartDatabase {
            after_ms: rng.u64(300..1_500),
            down_ms: rng.u64(300..1_500),
        }
    } else {
        Fault::Kill {
            node: rng.usize(..NODES),
            after_ms: rng.u64(300..1_500),
            down_ms: rng.u64(100..800),
        }
    }
}

fn node_env(node: usize) -> Vec<(&'static str, &'static str)> {
    const IDS: [&str; NODES] = ["node-0", "node-1", "node-2"];
    [&[("SAGAPLANE_CLUSTER__NODE_ID", IDS[node])], FAULT_ENV, ENV].concat()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("no panic")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_under_kills_and_a_database_restart_lose_nothing() {
    let Some(bin) = sagaplane_api::private_postgres::find_bin() else {
        assert!(
            std::env::var_os("SAGAPLANE_REQUIRE_INITDB").is_none(),
            "initdb is required here (SAGAPLANE_REQUIRE_INITDB) but was not found"
        );
        eprintln!(
            "SKIPPED: initdb and pg_ctl not found (pg_config --bindir, \
             /usr/lib/postgresql/*/bin, PATH); install the PostgreSQL server"
        );
        return;
    };
    let seed = std::env::var("SAGAPLANE_FAULT_SEED")
        .map(|s| s.parse().expect("SAGAPLANE_FAULT_SEED is a number"))
        .unwrap_or_else(|_| fastrand::u64(..));
    eprintln!("three nodes: seed {seed} (SAGAPLANE_FAULT_SEED={seed} replays its faults)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let restart_at = rng.usize(1..KILLS);
    let began = Instant::now();

    let postgres = Arc::new(blocking(move || Postgres::create(bin)).await);
    let db = postgres.url("sagaplane");
    let ports: Vec<u16> = (0..NODES).map(|_| restart_port()).collect();
    // The first node creates the database and its tables; then the others.
    let mut nodes = vec![Some(Server::start_on(ports[0], &db, &node_env(0)).await)];
    for (n, port) in ports.iter().enumerate().skip(1) {
        nodes.push(Some(Server::start_on(*port, &db, &node_env(n)).await));
    }
    let pool = PgPool::connect(&db).await.unwrap();
    // The three share the partitions before the load begins.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let owners: Vec<(String, i64)> = sqlx::query_as(
            "SELECT owner, count(*) FROM partition_leases \
             WHERE expires_at > now() AND owner IS NOT NULL GROUP BY owner",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if owners.len() == NODES && owners.iter().map(|(_, n)| n).sum::<i64>() == 64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the partitions were not shared: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;

    let bases: Arc<Vec<String>> = Arc::new(
        ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect(),
    );
    let cases = Arc::new(cases(SAGAS));
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (cases, bases) = (cases.clone(), bases.clone());
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(1 + c as u64));
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ids = Vec::new();
            for i in (c..SAGAS).step_by(CLIENTS) {
                let id =
                    start_retrying(&client, &bases, || rng.usize(..), &cases[i], deadline).await;
                // Like a client waiting for its order, on any node (which
                // paces the load); a fault only cuts the wait short.
                let _ = client
                    .get(format!(
                        "{}/v1/sagas/{id}?wait=1",
                        bases[rng.usize(..bases.len())]
                    ))
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await;
                ids.push((i, id));
            }
            ids
        }));
    }

    // Faults until every saga is started, and at least KILLS kills and the
    // database's restart.
    let mut kills = 0;
    for index in 0.. {
        if index > KILLS && clients.iter().all(|c| c.is_finished()) {
            break;
        }
        let fault = fault(&mut rng, index, restart_at);
        eprintln!("three nodes: {fault:?}");
        match fault {
            Fault::Kill {
                node,
                after_ms,
                down_ms,
            } => {
                tokio::time::sleep(Duration::from_millis(after_ms)).await;
                nodes[node].take().expect("the node runs").kill();
                kills += 1;
                tokio::time::sleep(Duration::from_millis(down_ms)).await;
                let env = node_env(node);
                nodes[node] = Some(Server::start_on(ports[node], &db, &env).await);
            }
            Fault::RestartDatabase { after_ms, down_ms } => {
                tokio::time::sleep(Duration::from_millis(after_ms)).await;
                let cluster = postgres.clone();
                blocking(move || cluster.stop_immediately()).await;
                tokio::time::sleep(Duration::from_millis(down_ms)).await;
                let cluster = postgres.clone();
                blocking(move || cluster.start()).await;
            }
        }
        // Each fault ends only the process it is aimed at.
        for (n, node) in nodes.iter_mut().enumerate() {
            let node = node.as_mut().expect("every node runs");
            assert_eq!(node.exited(), None, "node {n} ended by itself");
        }
    }
    let faulted = began.elapsed();
    let mut ids = HashMap::new();
    for client in clients {
        ids.extend(client.await.expect("a client finished"));
    }
    assert_eq!(ids.len(), SAGAS);
    eprintln!(
        "three nodes: faults done after {faulted:?}, every saga started after {:?}",
        began.elapsed()
    );

    // Every saga settles, and every command is published, within the bound.
    let pool = PgPool::connect(&db).await.unwrap();
    let settle = Instant::now() + Duration::from_secs(60);
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    loop {
        let unsettled =
            count("SELECT count(*) FROM sagas WHERE status IN ('running', 'compensating')").await;
        let unsent = count("SELECT count(*) FROM commands WHERE sent_at IS NULL").await;
        if unsettled == 0 && unsent == 0 {
            break;
        }
        if Instant::now() > settle {
            let stuck: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT business_key, status, current_step, last_error FROM sagas \
                 WHERE status IN ('running', 'compensating') ORDER BY business_key LIMIT 20",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            panic!(
                "seed {seed}: {unsettled} sagas unsettled and {unsent} commands unsent \
                 after 60 s, e.g. {stuck:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "three nodes: every saga settled after {:?}",
        began.elapsed()
    );

    // Every saga ended as its input dictates (none suspended, none stuck).
    let statuses: HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT id::text, status FROM sagas")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(
        statuses.len(),
        SAGAS,
        "seed {seed}: one saga per business key"
    );
    for (i, id) in &ids {
        let case = &cases[*i];
        assert_eq!(
            statuses[id], case.status,
            "seed {seed}: saga {} ({id})",
            case.key
        );
    }
    // No effect applied twice; each saga's required effects were applied,
    // and no other but undos.
    assert_no_effect_twice(&pool).await;
    assert_effects_as_dictated(&pool, &cases, &ids).await;
    // No history has a gap or a duplicate, and each row agrees with its history.
    assert_histories_whole(&pool).await;
    // Every command was handed over: none is left unsent or dead-lettered.
    assert_eq!(
        count(
            "SELECT count(*) FROM commands WHERE sent_at IS NULL OR dead_lettered_at IS NOT NULL"
        )
        .await,
        0,
        "seed {seed}: commands not published"
    );
    assert_eq!(
        count("SELECT count(*) FROM dead_letters").await,
        0,
        "seed {seed}: dead letters"
    );
    let timed_out = count(
        "SELECT count(*) FROM saga_events \
         WHERE event_type = 'StepFailed' AND data->>'cause' = 'timed_out'",
    )
    .await;
    eprintln!(
        "three nodes: seed {seed}, {SAGAS} sagas, {kills} kills and a database restart: \
         {timed_out} step attempts timed out and were retried; {:?} in all",
        began.elapsed()
    );
    assert!(timed_out > 0, "no fault interrupted a step");
    pool.close().await;
    for node in nodes.into_iter().flatten() {
        node.kill();
    }
}
