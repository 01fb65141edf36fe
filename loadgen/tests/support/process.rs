//! The `loadgen` binary as a child process whose stderr is read line by line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// A running `loadgen`.
pub struct Loadgen {
    child: std::process::Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Loadgen {
    /// Starts `loadgen ARGS` with `env` added.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// Waits (at most 60 s) for a line of stderr containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> String {
        self.wait_for_within(needle, Duration::from_secs(60))
    }

    /// Waits (at most `limit`) for a line of stderr containing `needle`; returns it.
    pub fn wait_for_within(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            let found = line.contains(needle);
            self.seen.push(line.clone());
            if found {
                return line;
            }
        }
        panic!("no line with '{needle}' on stderr:\n{}", self.seen.join("\n"));
    }

    /// The URL in the first line (within 2 minutes) containing `needle`.
    pub fn url_after(&mut self, needle: &str) -> String {
        let line = self.wait_for_within(needle, Duration::from_secs(120));
        let at = line.find("http://").unwrap_or_else(|| panic!("no URL in {line}"));
        line[at..].split_whitespace().next().unwrap().to_owned()
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends the signal `name` (TERM, INT, KILL).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; returns the code and all of stderr.
    pub fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.iter());
        (status.code().unwrap_or(-1), self.seen.join("\n"))
    }

    /// Waits (at most `limit`, then kills it and fails) for the exit; the code and all of stderr.
    pub fn finish_within(mut self, limit: Duration) -> (i32, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.seen.extend(self.lines.iter());
                return (status.code().unwrap_or(-1), self.seen.join("\n"));
            }
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("no exit within {}s:\n{}", limit.as_secs(), self.seen.join("\n"));
            }
            // Polling a child's exit: not a synchronisation between the two.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
