//! The middle-end RPC link (§5), usable in both roles: the proxy (client of the ME) and the
//! parity harness's fake ME (server).
//!
//! * [`frame`] — `[len][seq][payload][crc]` framing, padding words, CRC32/CRC32C, strict seq.
//! * [`keys`] — `aes_create_keys`: the AES-256-CBC keys and IVs from the nonces, addresses
//!   and proxy-secret.
//! * [`handshake`] — RPC_NONCE, RPC_HANDSHAKE, RPC_HANDSHAKE_ERROR and the PID struct, with
//!   C's validation rules and error codes.
//! * [`messages`] — [`RpcMessage`]: PROXY_REQ/ANS, SIMPLE_ACK, CLOSE_EXT/CLOSE_CONN,
//!   PING/PONG and unknown ops.
//! * [`link`] — [`RpcLink`], the sans-IO connection state machine (CBC, padding, handshake).

pub mod frame;
pub mod handshake;
pub mod keys;
pub mod link;
pub mod messages;

/// The buffer types of this module's API, re-exported so callers need no direct `bytes` dependency.
pub use bytes::{Bytes, BytesMut};
pub use frame::{encode_frame, CrcMode, Frame, FrameDecoder, FrameError};
pub use handshake::{Handshake, HandshakeError, Nonce, NonceSchema, ProcessId};
pub use keys::{aes_create_keys, KeyAddrs, KeyInputs, Purpose};
pub use link::{LinkError, LinkEvent, LinkParams, Role, RpcLink, ServerPolicy};
pub use messages::{ProxyReq, ProxyReqExtra, ProxyReqHeader, RpcMessage};
