//! The event handler's core (SPEC §5): the platform's `OnMessage` calls ([`grpc`]) become
//! coalesced [`update`]s in a bounded [`buffer`]; a background [`flusher`] writes them in batches
//! through the narrow [`store`] interface, in one of two layouts. The per-stat layout derives goal
//! progress from one row per (user, source) by the rules in [`derive`].

pub mod buffer;
pub mod derive;
pub mod flusher;
pub mod grpc;
pub mod store;
pub mod update;
