//! The event handler's core (SPEC §5): the platform's `OnMessage` calls become coalesced
//! per-goal [`update`]s in a bounded [`buffer`]; a background [`flusher`] writes them in batches
//! through the narrow [`store`] interface.

pub mod buffer;
pub mod flusher;
pub mod grpc;
pub mod store;
pub mod update;
