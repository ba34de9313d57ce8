//! AES-256-CBC key derivation of the middle-end link (§5.4; `net-crypto-aes.c`
//! `aes_create_keys`).
//!
//! The byte string `s` is
//! `nonce_server[16] ‖ nonce_client[16] ‖ client_ts[4] ‖ server_ip[4] ‖ client_port[2] ‖
//! purpose[6] ‖ client_ip[4] ‖ server_port[2] ‖ secret[N] ‖ nonce_server[16] ‖
//! (IPv6 only: client_ipv6[16] ‖ server_ipv6[16]) ‖ nonce_client[16]`,
//! IPv4 addresses as host-order u32 written little-endian (127.0.0.1 → `01 00 00 7f`),
//! both zero in the IPv6 layout. Then `key = MD5(s[1..])[..12] ‖ SHA1(s)` and
//! `iv = MD5(s[2..])`. The client ("CLIENT") writes with its purpose and reads with
//! "SERVER"; the server the other way round. The DH temp key of C is never used on this
//! link and is not supported.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::protocol::crypto;

/// The smallest proxy-secret `aes_create_keys` accepts (`MIN_PWD_LEN`).
pub const MIN_SECRET_LEN: usize = 32;
/// The largest proxy-secret `aes_create_keys` accepts (`MAX_PWD_LEN`).
pub const MAX_SECRET_LEN: usize = 256;

/// The purpose word written at offset 42 of `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `"CLIENT"`: the proxy's sending direction.
    Client,
    /// `"SERVER"`: the ME's sending direction.
    Server,
}

impl Purpose {
    /// The six ASCII bytes.
    pub fn word(self) -> &'static [u8; 6] {
        match self {
            Purpose::Client => b"CLIENT",
            Purpose::Server => b"SERVER",
        }
    }
}

/// The two endpoint addresses, already NAT-translated by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAddrs {
    /// Both ends IPv4.
    V4 {
        /// The ME's (server's) IPv4.
        server_ip: Ipv4Addr,
        /// The proxy's (client's) IPv4, after `--nat-info`.
        client_ip: Ipv4Addr,
    },
    /// Both ends IPv6 (`server_ip = client_ip = 0`, the v6 addresses appended).
    V6 {
        /// The ME's (server's) IPv6.
        server_ip: Ipv6Addr,
        /// The proxy's (client's) IPv6.
        client_ip: Ipv6Addr,
    },
}

/// Everything `aes_create_keys` hashes.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    /// The ME's (server's) nonce.
    pub nonce_server: [u8; 16],
    /// The proxy's (client's) nonce.
    pub nonce_client: [u8; 16],
    /// The proxy's (client's) `crypto_ts`.
    pub client_ts: i32,
    /// Both addresses.
    pub addrs: KeyAddrs,
    /// The ME's (server's) port.
    pub server_port: u16,
    /// The proxy's (client's) local port.
    pub client_port: u16,
    /// The whole proxy-secret.
    pub secret: &'a [u8],
}

/// Why keys could not be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret is outside 32..=256 bytes (C asserts).
    #[error("proxy-secret of {0} bytes is outside 32..=256")]
    SecretLength(usize),
    /// An IPv4 layout with a zero address (C asserts or silently switches to IPv6).
    #[error("IPv4 key derivation with a zero address")]
    ZeroIpv4,
}

/// The key material of one link end.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkKeys {
    /// Key of the sending direction.
    pub write_key: [u8; 32],
    /// IV of the sending direction.
    pub write_iv: [u8; 16],
    /// Key of the receiving direction.
    pub read_key: [u8; 32],
    /// IV of the receiving direction.
    pub read_iv: [u8; 16],
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKeys(..)")
    }
}

/// Builds the string `s` of §5.4 for `purpose`.
///
/// # Errors
/// [`KeyError`] for a secret outside 32..=256 bytes or a zero IPv4 address.
pub fn key_string(inputs: &KeyInputs<'_>, purpose: Purpose) -> Result<Vec<u8>, KeyError> {
    let n = inputs.secret.len();
    if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&n) {
        return Err(KeyError::SecretLength(n));
    }
    let (server_ip, client_ip) = match inputs.addrs {
        KeyAddrs::V4 {
            server_ip,
            client_ip,
        } => {
            if server_ip.is_unspecified() || client_ip.is_unspecified() {
                return Err(KeyError::ZeroIpv4);
            }
            (u32::from(server_ip), u32::from(client_ip))
        }
        KeyAddrs::V6 { .. } => (0, 0),
    };
    let mut s = Vec::with_capacity(70 + n + 32 + 16);
    s.extend_from_slice(&inputs.nonce_server);
    s.extend_from_slice(&inputs.nonce_client);
    s.extend_from_slice(&inputs.client_ts.to_le_bytes());
    s.extend_from_slice(&server_ip.to_le_bytes());
    s.extend_from_slice(&inputs.client_port.to_le_bytes());
    s.extend_from_slice(purpose.word());
    s.extend_from_slice(&client_ip.to_le_bytes());
    s.extend_from_slice(&inputs.server_port.to_le_bytes());
    s.extend_from_slice(inputs.secret);
    s.extend_from_slice(&inputs.nonce_server);
    if let KeyAddrs::V6 {
        server_ip,
        client_ip,
    } = inputs.addrs
    {
        s.extend_from_slice(&client_ip.octets());
        s.extend_from_slice(&server_ip.octets());
    }
    s.extend_from_slice(&inputs.nonce_client);
    Ok(s)
}

/// `aes_create_keys` for one direction: the `(key, iv)` written with `purpose`.
///
/// # Errors
/// As [`key_string`].
pub fn aes_create_keys(
    inputs: &KeyInputs<'_>,
    purpose: Purpose,
) -> Result<([u8; 32], [u8; 16]), KeyError> {
    let s = key_string(inputs, purpose)?;
    let s1 = s.get(1..).unwrap_or_default();
    let s2 = s.get(2..).unwrap_or_default();
    let md5_1 = crypto::md5(&[s1]);
    let sha = crypto::sha1(&[&s]);
    let mut key = [0u8; 32];
    key[..12].copy_from_slice(&md5_1[..12]);
    key[12..].copy_from_slice(&sha);
    let iv = crypto::md5(&[s2]);
    Ok((key, iv))
}

/// Both directions for one end: the client writes "CLIENT" and reads "SERVER", the
/// server the opposite.
///
/// # Errors
/// As [`key_string`].
pub fn link_keys(inputs: &KeyInputs<'_>, am_client: bool) -> Result<LinkKeys, KeyError> {
    let (w, r) = if am_client {
        (Purpose::Client, Purpose::Server)
    } else {
        (Purpose::Server, Purpose::Client)
    };
    let (write_key, write_iv) = aes_create_keys(inputs, w)?;
    let (read_key, read_iv) = aes_create_keys(inputs, r)?;
    Ok(LinkKeys {
        write_key,
        write_iv,
        read_key,
        read_iv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(secret: &[u8]) -> KeyInputs<'_> {
        KeyInputs {
            nonce_server: [1; 16],
            nonce_client: [2; 16],
            client_ts: 0x6b07_0e56,
            addrs: KeyAddrs::V4 {
                server_ip: Ipv4Addr::new(127, 0, 0, 1),
                client_ip: Ipv4Addr::new(10, 0, 0, 2),
            },
            server_port: 18888,
            client_port: 40000,
            secret,
        }
    }

    #[test]
    fn ipv4_string_layout_matches_section_5_4() {
        let secret = [0xabu8; 32];
        let s = key_string(&inputs(&secret), Purpose::Client).unwrap();
        assert_eq!(s.len(), 70 + 32 + 16);
        assert_eq!(&s[32..36], &0x6b07_0e56i32.to_le_bytes());
        assert_eq!(&s[36..40], &[1, 0, 0, 127]);
        assert_eq!(&s[40..42], &40000u16.to_le_bytes());
        assert_eq!(&s[42..48], b"CLIENT");
        assert_eq!(&s[48..52], &[2, 0, 0, 10]);
        assert_eq!(&s[52..54], &18888u16.to_le_bytes());
        assert_eq!(&s[54..86], &secret);
        assert_eq!(&s[86..102], &[1; 16]);
        assert_eq!(&s[102..118], &[2; 16]);
    }

    #[test]
    fn ipv6_string_inserts_addresses_before_nonce_client() {
        let secret = [0x11u8; 40];
        let mut i = inputs(&secret);
        let (srv, cli) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        i.addrs = KeyAddrs::V6 {
            server_ip: srv,
            client_ip: cli,
        };
        let s = key_string(&i, Purpose::Server).unwrap();
        assert_eq!(s.len(), 70 + 40 + 32 + 16);
        assert_eq!(&s[36..40], &[0; 4]);
        assert_eq!(&s[48..52], &[0; 4]);
        assert_eq!(&s[110..126], &cli.octets());
        assert_eq!(&s[126..142], &srv.octets());
    }

    #[test]
    fn client_and_server_keys_mirror() {
        let secret = [7u8; 128];
        let c = link_keys(&inputs(&secret), true).unwrap();
        let s = link_keys(&inputs(&secret), false).unwrap();
        assert_eq!(c.write_key, s.read_key);
        assert_eq!(c.write_iv, s.read_iv);
        assert_eq!(c.read_key, s.write_key);
        assert_ne!(c.write_key, c.read_key);
    }

    #[test]
    fn rejects_bad_secret_and_zero_ipv4() {
        assert_eq!(
            aes_create_keys(&inputs(&[0; 31]), Purpose::Client),
            Err(KeyError::SecretLength(31))
        );
        assert_eq!(
            aes_create_keys(&inputs(&[0; 257]), Purpose::Client),
            Err(KeyError::SecretLength(257))
        );
        let secret = [0u8; 32];
        let mut i = inputs(&secret);
        i.addrs = KeyAddrs::V4 {
            server_ip: Ipv4Addr::UNSPECIFIED,
            client_ip: Ipv4Addr::new(1, 2, 3, 4),
        };
        assert_eq!(
            aes_create_keys(&i, Purpose::Client),
            Err(KeyError::ZeroIpv4)
        );
    }
}
