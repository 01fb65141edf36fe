//! # The platform's event contract
//!
//! The two unary gRPC services through which the game platform delivers events to the event
//! handler, generated at build time from `proto/*.proto`. The package names and field numbers are
//! the wire contract shared with the production service:
//!
//! - [`account`] — `accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage`
//! - [`statistic`] — `accelbyte.social.statistic.v1.StatisticStatItemUpdatedService/OnMessage`
//! - [`paths`] — the two methods' fully qualified paths, as the platform calls them
//!
//! Both return `google.protobuf.Empty`, which prost maps to `()`.

#![allow(missing_debug_implementations)] // generated code

/// `accelbyte.iam.account.v1`: the login event and its service.
pub mod account {
    tonic::include_proto!("accelbyte.iam.account.v1");
}

/// `accelbyte.social.statistic.v1`: the stat update event and its service.
pub mod statistic {
    tonic::include_proto!("accelbyte.social.statistic.v1");
}

/// Fully qualified gRPC method paths, as the platform calls them.
pub mod paths {
    /// The login event's `OnMessage`.
    pub const LOGIN_ON_MESSAGE: &str = "/accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage";
    /// The stat update event's `OnMessage`.
    pub const STAT_ON_MESSAGE: &str = "/accelbyte.social.statistic.v1.StatisticStatItemUpdatedService/OnMessage";
}
