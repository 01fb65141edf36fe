//! A target that does nothing: REST `GET /challenge/v1/challenges` and `/challenge/healthz`
//! answering a constant body, and both `OnMessage` services answering `Empty` at once. For
//! measuring the load generator's own ceiling and cost (and comparing it with wrk).
//!
//! Run with: `cargo run --release -p loadgen --example trivial_target -- 127.0.0.1:18080 127.0.0.1:16565`

use axum::Router;
use axum::routing::get;
use proto::account::UserLoggedIn;
use proto::account::user_authentication_user_logged_in_service_server::{
    UserAuthenticationUserLoggedInService, UserAuthenticationUserLoggedInServiceServer,
};
use proto::statistic::StatItemUpdated;
use proto::statistic::statistic_stat_item_updated_service_server::{
    StatisticStatItemUpdatedService, StatisticStatItemUpdatedServiceServer,
};

#[derive(Debug, Clone, Copy)]
struct Instant;

#[tonic::async_trait]
impl UserAuthenticationUserLoggedInService for Instant {
    async fn on_message(&self, _: tonic::Request<UserLoggedIn>) -> Result<tonic::Response<()>, tonic::Status> {
        Ok(tonic::Response::new(()))
    }
}

#[tonic::async_trait]
impl StatisticStatItemUpdatedService for Instant {
    async fn on_message(&self, _: tonic::Request<StatItemUpdated>) -> Result<tonic::Response<()>, tonic::Status> {
        Ok(tonic::Response::new(()))
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let rest_addr = args.next().unwrap_or_else(|| "127.0.0.1:18080".into());
    let grpc_addr = args.next().unwrap_or_else(|| "127.0.0.1:16565".into());
    let rest = tokio::net::TcpListener::bind(&rest_addr).await?;
    let grpc = tokio::net::TcpListener::bind(&grpc_addr).await?;
    println!("REST on http://{rest_addr}, gRPC on http://{grpc_addr}");
    let app = Router::new()
        .route("/challenge/v1/challenges", get(|| async { "{\"challenges\":[]}" }))
        .route("/challenge/healthz", get(|| async { "{\"status\":\"ok\"}" }));
    let rest = tokio::spawn(async move { axum::serve(rest, app).await });
    let grpc = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(4096))
        .add_service(UserAuthenticationUserLoggedInServiceServer::new(Instant))
        .add_service(StatisticStatItemUpdatedServiceServer::new(Instant))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc));
    let (rest, grpc) = tokio::join!(rest, grpc);
    rest.map_err(std::io::Error::other)??;
    grpc.map_err(std::io::Error::other)
}
