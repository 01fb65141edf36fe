//! The REST server's own limits: a deadline for request headers, a cap on connections, and a
//! shutdown that finishes however its clients behave; and the event handler's bounded shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sut::services::server::ServerLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{AppOptions, fresh_database, handler_settings, spawn_app, spawn_handler, token};

/// How long a test waits for what must happen much sooner; reaching it fails the test.
const GUARD: Duration = Duration::from_secs(20);

/// Reads until the server closes the connection; what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(GUARD, stream.read_to_end(&mut received))
        .await
        .expect("the server closed the connection before the guard")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

fn limits(change: impl FnOnce(&mut ServerLimits)) -> ServerLimits {
    let mut limits = ServerLimits::default();
    change(&mut limits);
    limits
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_at_the_header_deadline() {
    let limits = limits(|l| l.header_read_timeout = Duration::from_millis(300));
    let app = spawn_app(AppOptions { limits, ..AppOptions::default() }).await;
    let mut slow = TcpStream::connect(app.rest_addr).await.unwrap();
    slow.write_all(b"GET /challenge/v1/chall").await.unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Others are served meanwhile and after.
    assert_eq!(app.get_challenges("alice").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_connection_over_the_cap_gets_503_in_the_error_body_and_the_others_are_served() {
    let limits = limits(|l| l.max_connections = 2);
    let app = spawn_app(AppOptions { limits, ..AppOptions::default() }).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(app.rest_addr).await.unwrap();
        // A full request, answered: the connection is accepted and counted before the next one.
        let request =
            format!("GET /challenge/healthz HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n", token("alice"));
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        held.push(stream);
    }
    let mut third = TcpStream::connect(app.rest_addr).await.unwrap();
    third.write_all(b"GET /challenge/healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], 14, "{body}");
    assert!(body["message"].as_str().unwrap().contains("2 connections"), "{body}");

    drop(held);
    // With the held connections closed, new ones are served again (the server may take a
    // moment to see the close: retry, bounded).
    let served = tokio::time::timeout(GUARD, async {
        loop {
            match app.http.get(format!("{}/healthz", app.base_url)).send().await {
                Ok(r) if r.status() == StatusCode::OK => return,
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    assert!(served.is_ok(), "served again once connections closed");
}

#[tokio::test]
async fn shutdown_finishes_within_the_grace_while_a_client_holds_a_half_sent_request() {
    let limits = limits(|l| {
        l.header_read_timeout = Duration::from_secs(600);
        l.shutdown_grace = Duration::from_millis(500);
    });
    let app = spawn_app(AppOptions { limits, ..AppOptions::default() }).await;
    let mut slow = TcpStream::connect(app.rest_addr).await.unwrap();
    slow.write_all(b"GET /challenge/v1/chall").await.unwrap();
    // Make sure the server has the connection before it is told to stop.
    assert_eq!(app.get_challenges("alice").await.status(), StatusCode::OK);
    tokio::time::timeout(GUARD, app.stop()).await.expect("the service stopped within the guard");
    let answer = read_until_closed(&mut slow).await;
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn the_event_handler_stops_within_its_grace_while_a_client_holds_a_half_open_connection() {
    let database = fresh_database().await;
    let mut settings = handler_settings(&database, sut::events::store::StoreKind::PerStat);
    settings.shutdown_grace = Duration::from_millis(500);
    let handler = spawn_handler(&settings, crate::events::test_config()).await;
    let address = handler.grpc_url.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&address).await.unwrap();
    // Half of the HTTP/2 preface, then nothing.
    slow.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut clients = crate::events::connect(&handler.grpc_url).await;
    let login = crate::events::Event::Login { user: "a".into() };
    crate::events::send(&mut clients, &login).await.expect("accepted");
    tokio::time::timeout(GUARD, handler.stop()).await.expect("the handler stopped within the guard");
}
