//! barelb.control.v1 (see `api/proto/barelb/control/v1/control.proto`):
//! generated messages, client and server.

/// The minor version of barelb.control.v1 this build speaks.
pub const PROTOCOL: u32 = 3;

/// How an ABORTED status that ends a speaker's stream begins when a
/// later-started speaker serves the same node: the operator writes it, the
/// speaker recognises it and stops answering for its layer-2 addresses.
pub const SUPERSEDED: &str = "superseded";

/// Audience of the ServiceAccount token a speaker presents.
pub const TOKEN_AUDIENCE: &str = "barelb-control";

#[allow(
    missing_debug_implementations,
    unused_qualifications,
    clippy::all,
    clippy::pedantic
)]
pub mod v1 {
    tonic::include_proto!("barelb.control.v1");
}
