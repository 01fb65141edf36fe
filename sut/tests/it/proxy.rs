//! A TCP proxy in front of PostgreSQL that loses the reply to a commit: while armed, it lets a
//! client's `COMMIT` reach the server, drops the server's answer and resets the client's
//! connection, so the client cannot know whether its transaction committed (it did).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The simple-query body sqlx sends to commit a transaction.
const COMMIT: &[u8] = b"COMMIT\0";

#[derive(Debug, Default)]
pub struct Counters {
    /// Commits still to sabotage.
    armed: AtomicUsize,
    /// Commit replies dropped so far.
    pub dropped: AtomicUsize,
}

pub struct CommitReplyDropper {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
}

impl CommitReplyDropper {
    /// A proxy on a free loopback port forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                tokio::spawn(relay(client, server, shared.clone()));
            }
        });
        Self { addr, counters }
    }

    /// Loses the reply of the next `commits` commits.
    pub fn arm(&self, commits: usize) {
        self.counters.armed.store(commits, Ordering::SeqCst);
    }
}

async fn relay(client: TcpStream, server: TcpStream, counters: Arc<Counters>) {
    let _ = client.set_nodelay(true);
    // Closing this socket resets it (RST) rather than ending it cleanly.
    let _ = client.set_zero_linger();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let awaiting_commit_reply = Arc::new(AtomicBool::new(false));
    let flag = awaiting_commit_reply.clone();
    let upstream_counters = counters.clone();
    let upstream = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let is_commit = buf[..n].windows(COMMIT.len()).any(|w| w == COMMIT);
            // Set before forwarding, so the reply cannot overtake the flag.
            if is_commit
                && upstream_counters
                    .armed
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| a.checked_sub(1))
                    .is_ok()
            {
                flag.store(true, Ordering::SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if awaiting_commit_reply.load(Ordering::SeqCst) {
            counters.dropped.fetch_add(1, Ordering::SeqCst);
            // No FIN: the socket closes (with a reset) once the read half goes too.
            client_write.forget();
            upstream.abort();
            return;
        }
        if client_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    upstream.abort();
}
