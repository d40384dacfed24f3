//! The code generated from `proto/identity/v1`, the descriptor set served by
//! reflection, and the RPC → permission table generated from the protos.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// `identity.v1`: messages, enums, service traits and clients.
pub mod identity {
    pub mod v1 {
        tonic::include_proto!("identity.v1");
    }
}

pub use identity::v1::*;

/// The encoded `FileDescriptorSet` of every identity.v1 file (with imports and
/// comments) for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("identity_descriptor");

/// How one RPC is authorized (the `(identity.v1.auth)` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcRule {
    /// The RPC's full name, `identity.v1.UserService/GetUser`.
    pub rpc: &'static str,
    /// Required permission; empty = any authenticated caller.
    pub permission: &'static str,
    /// Also allowed when the target user is the caller.
    pub allow_self: bool,
    /// No token needed.
    pub public: bool,
}

include!(concat!(env!("OUT_DIR"), "/rpc_rules.rs"));
