//! A throwaway PostgreSQL cluster: `initdb` into a temporary folder, a server on a free loopback
//! port, stopped and deleted on drop. Used by the tests (one cluster per test binary, a fresh
//! database per test) and by the harness when no target is given.
//!
//! `initdb` refuses to run as root, so when this process is root the cluster's commands run as
//! the `postgres` user (via `runuser`) and the folder is handed to that user.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Why a cluster could not be provisioned or controlled.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No PostgreSQL server binaries were found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install PostgreSQL 15 \
         (Debian: apt-get install postgresql-15) or set GAUNTLET_PG_BIN to their folder"
    )]
    NoBinaries,
    /// A command could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("{command} failed ({status}): {output}")]
    Failed {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (and the server log's tail, for start failures).
        output: String,
    },
    /// Setting up the folder failed.
    #[error("preparing the cluster folder: {0}")]
    Io(#[from] std::io::Error),
}

/// How to configure the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Trade durability for speed (`fsync=off`, `synchronous_commit=off`): for tests only.
    pub unsafe_fast: bool,
    /// `shared_preload_libraries`, e.g. `pg_stat_statements`.
    pub preload: Vec<String>,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
}

/// A running throwaway cluster. Dropping it stops the server and deletes its folder.
#[derive(Debug)]
pub struct PgCluster {
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as_postgres: bool,
    server_options: String,
}

impl PgCluster {
    /// Runs `initdb` and starts the server.
    pub fn start(options: &ClusterOptions) -> Result<Self, PgError> {
        let bin = find_binaries().ok_or(PgError::NoBinaries)?;
        let run_as_postgres = is_root();
        let root = tempfile::Builder::new().prefix("gauntlet-pg-").tempdir()?;
        let root_path = root.path().to_path_buf();
        std::fs::create_dir(root_path.join("socket"))?;
        if run_as_postgres {
            hand_to_postgres(&root_path)?;
        }
        let port = free_port()?;
        let mut server_options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400",
            root_path.join("socket").display()
        );
        if options.unsafe_fast {
            server_options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        if !options.preload.is_empty() {
            server_options.push_str(&format!(" -c shared_preload_libraries={}", options.preload.join(",")));
        }
        for (name, value) in &options.settings {
            server_options.push_str(&format!(" -c {name}={value}"));
        }
        let cluster = Self { root: Some(root), root_path, bin, port, run_as_postgres, server_options };
        cluster.run(
            "initdb",
            &["-D", &cluster.data_arg(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `database` as the `postgres` superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server quickly (in-flight connections are cut), keeping the data.
    pub fn stop_server(&self) -> Result<(), PgError> {
        self.run("pg_ctl", &["-D", &self.data_arg(), "-m", "fast", "-w", "stop"]).map(drop)
    }

    /// Starts the server again on the same port, waiting until it accepts connections.
    pub fn start_server(&self) -> Result<(), PgError> {
        let log = self.root_path.join("server.log").display().to_string();
        let result = self.run(
            "pg_ctl",
            &["-D", &self.data_arg(), "-l", &log, "-o", &self.server_options, "-w", "-t", "60", "start"],
        );
        if let Err(PgError::Failed { command, status, output }) = result {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String =
                tail.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            return Err(PgError::Failed { command, status, output: format!("{output}\nserver log:\n{tail}") });
        }
        result.map(drop)
    }

    /// Arranges for the cluster to be stopped and deleted when this *process* exits, however it
    /// exits (a crash or SIGKILL included): a small shell watchdog polls this process's id.
    pub fn stop_when_this_process_exits(&self) -> Result<(), PgError> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {root}",
            pid = std::process::id(),
            ctl = self.command_prefix_string("pg_ctl"),
            data = self.data_arg(),
            root = self.root_path.display()
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| PgError::Spawn { command: "sh (cluster watchdog)".into(), source })?;
        Ok(())
    }

    /// Keeps the cluster after this value is gone, until this process exits (for clusters held
    /// in statics, which are never dropped).
    pub fn stop_when_process_exits(mut self) -> Result<ClusterGuard, PgError> {
        self.stop_when_this_process_exits()?;
        let _ = self.root.take().map(tempfile::TempDir::keep);
        Ok(ClusterGuard { port: self.port })
    }

    /// The cluster's data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.root_path.join("data")
    }

    fn data_arg(&self) -> String {
        self.data_dir().display().to_string()
    }

    fn command_prefix_string(&self, program: &str) -> String {
        let path = self.bin.join(program).display().to_string();
        if self.run_as_postgres { format!("runuser -u postgres -- {path}") } else { path }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, PgError> {
        let path = self.bin.join(program);
        let mut command = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        // Its own process group: a Ctrl-C meant for the harness must not stop the database.
        command.args(args).stdin(Stdio::null()).current_dir(&self.root_path).process_group(0);
        let described = format!("{program} {}", args.join(" "));
        let output = command.output().map_err(|source| PgError::Spawn { command: described.clone(), source })?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(PgError::Failed {
                command: described,
                status: output.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            })
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.root.is_some() {
            let _ = self.run("pg_ctl", &["-D", &self.data_arg(), "-m", "immediate", "-w", "stop"]);
        }
    }
}

/// A cluster that lives until the process exits.
#[derive(Debug, Clone, Copy)]
pub struct ClusterGuard {
    port: u16,
}

impl ClusterGuard {
    /// A URL for database `database` as the `postgres` superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// The folder holding `initdb`, `pg_ctl` and `postgres`: `$GAUNTLET_PG_BIN`, the newest
/// `/usr/lib/postgresql/*/bin`, or the folder of `pg_ctl` on `PATH`.
pub fn find_binaries() -> Option<PathBuf> {
    let complete = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| dir.join(b).is_file());
    if let Some(dir) = std::env::var_os("GAUNTLET_PG_BIN").map(PathBuf::from) {
        return complete(&dir).then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .filter_map(|p| std::fs::canonicalize(p.join("pg_ctl")).ok())
            .filter_map(|ctl| ctl.parent().map(Path::to_path_buf))
            .find(|dir| complete(dir))
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn hand_to_postgres(dir: &Path) -> Result<(), PgError> {
    let status = Command::new("chown")
        .args(["-R", "postgres:"])
        .arg(dir)
        .status()
        .map_err(|source| PgError::Spawn { command: "chown".into(), source })?;
    if status.success() {
        Ok(())
    } else {
        Err(PgError::Failed {
            command: format!("chown -R postgres: {}", dir.display()),
            status: status.to_string(),
            output: "running as root needs a 'postgres' user to own the cluster".into(),
        })
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
