//! `healthcheck URL`: exits 0 when `GET URL` answers 200, 1 otherwise — the containers' health
//! check, in images that have no shell or curl. Plain HTTP/1.0 over a TCP socket, 2 s timeout.
//!
//! Run with: `cargo run -p sut --bin healthcheck -- http://127.0.0.1:8080/challenge/healthz`

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

fn check(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host_port, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let addr = host_port
        .to_socket_addrs()
        .map_err(|e| format!("{host_port}: {e}"))?
        .next()
        .ok_or(format!("{host_port}: no address"))?;
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host_port}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    match &head[9..12] {
        b"200" => Ok(()),
        status => Err(format!("HTTP {}", String::from_utf8_lossy(status))),
    }
}

fn main() {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: healthcheck URL");
        std::process::exit(2);
    };
    if let Err(e) = check(&url) {
        eprintln!("unhealthy: {e}");
        std::process::exit(1);
    }
}
