//! The proxy-secret file (`--aes-pwd`), the 16-byte hex secrets of `-S`/`-P`, and the
//! `--nat-info` address translation rules.

use std::fmt;
use std::net::Ipv4Addr;

use crate::protocol::crypto::md5;

/// Smallest accepted proxy-secret file (C `MIN_PWD_LEN`).
pub const MIN_PWD_LEN: usize = 32;
/// Largest accepted proxy-secret file (C `MAX_PWD_LEN`).
pub const MAX_PWD_LEN: usize = 256;
/// How many bytes C reads from the file in one `read` (C `MAX_PWD_CONFIG_LEN + 1`; the
/// GetPageSpeed build uses 16384, upstream 4096; either way only 32..256 is accepted).
pub const PWD_READ_LIMIT: usize = 16384 + 1;
/// The default proxy-secret path when `--aes-pwd` is absent (C `DEFAULT_PWD_FILE`).
pub const DEFAULT_PWD_FILE: &str = "secret";
/// Most `--nat-info` rules (C `MAX_NAT_INFO_RULES`).
pub const MAX_NAT_INFO_RULES: usize = 16;

/// The proxy-secret: 32..256 raw bytes mixed into the ME key derivation.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySecret {
    bytes: Vec<u8>,
}

impl fmt::Debug for ProxySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("ProxySecret")
            .field("len", &self.bytes.len())
            .field("md5", &self.md5_hex())
            .finish()
    }
}

/// Why a proxy-secret was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The length is outside 32..256. C then logs (at -v) `secret file <f> too long or too
    /// short: loaded N bytes, expected 32..256` and dies with
    /// `fatal: cannot load secret definition file `<f>'`.
    #[error("too long or too short: loaded {len} bytes, expected {MIN_PWD_LEN}..{MAX_PWD_LEN}")]
    BadLength {
        /// The length read (capped at [`PWD_READ_LIMIT`] by the caller's read).
        len: usize,
    },
}

impl ProxySecret {
    /// Accepts the file contents (read up to [`PWD_READ_LIMIT`] bytes).
    ///
    /// # Errors
    /// [`SecretError::BadLength`] unless `32 <= len <= 256`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if !(MIN_PWD_LEN..=MAX_PWD_LEN).contains(&bytes.len()) {
            return Err(SecretError::BadLength { len: bytes.len() });
        }
        Ok(ProxySecret {
            bytes: bytes.to_vec(),
        })
    }

    /// The raw secret.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `key_signature`: the first 4 bytes as a little-endian `i32`, sent as `key_select`
    /// in RPC_NONCE.
    pub fn key_select(&self) -> i32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.bytes.get(..4).unwrap_or(&[0; 4]));
        i32::from_le_bytes(b)
    }

    /// Lower-case hex MD5 of the file (stats `aes_pwd_hash`; C prints `none` when no
    /// secret is loaded).
    pub fn md5_hex(&self) -> String {
        hex::encode(md5(&[&self.bytes]))
    }
}

/// Why a `-S`/`-P` value was rejected; the texts are C's (`kprintf`, then usage, exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexSecretError {
    /// Not exactly 32 characters.
    #[error("'{opt}' option requires exactly 32 hex digits")]
    BadLength {
        /// The option letter, `S` or `P`.
        opt: char,
    },
    /// A non-hex character. C names the option `'S'` here even for `-P`.
    #[error("'S' option requires exactly 32 hex digits. '{bad}' is not hexdigit")]
    NotHex {
        /// The first offending character.
        bad: char,
    },
}

/// Parses the 32 hex digits of `-S`/`-P` (either case) into 16 bytes. `opt` is the option
/// letter used in the length message. The length is counted in bytes like C's `strlen`.
///
/// # Errors
/// [`HexSecretError`] with C's message.
pub fn parse_hex16(opt: char, s: &str) -> Result<[u8; 16], HexSecretError> {
    let b = s.as_bytes();
    if b.len() != 32 {
        return Err(HexSecretError::BadLength { opt });
    }
    let mut out = [0u8; 16];
    for (i, &c) in b.iter().enumerate() {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => {
                // C prints the single byte; show it as a char when it is one.
                let bad = s.get(i..).and_then(|r| r.chars().next()).unwrap_or('?');
                return Err(HexSecretError::NotHex { bad });
            }
        };
        if let Some(slot) = out.get_mut(i / 2) {
            *slot = (*slot << 4) | v;
        }
    }
    Ok(out)
}

/// One `--nat-info <local>:<global>` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatRule {
    /// The local address.
    pub local: Ipv4Addr,
    /// What the local address is translated to.
    pub global: Ipv4Addr,
}

/// Why a `--nat-info` value was rejected; the texts are C's (printed to stderr, then usage,
/// exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatInfoError {
    /// No `:`.
    #[error("expected <local-addr>:<global-addr> in --nat-info")]
    NoColon,
    /// One side is not a dotted-quad IPv4 address.
    #[error("cannot translate host '{0}' in --nat-info")]
    BadHost(String),
    /// More than [`MAX_NAT_INFO_RULES`] rules.
    #[error("too many rules in --nat-info")]
    TooMany,
}

/// Parses one `--nat-info` value; the split is at the **last** `:` like C's `strrchr`.
///
/// # Errors
/// [`NatInfoError`] with C's message.
pub fn parse_nat_info(s: &str) -> Result<NatRule, NatInfoError> {
    let (l, g) = s.rsplit_once(':').ok_or(NatInfoError::NoColon)?;
    let local = parse_inet_pton4(l).ok_or_else(|| NatInfoError::BadHost(l.to_string()))?;
    let global = parse_inet_pton4(g).ok_or_else(|| NatInfoError::BadHost(g.to_string()))?;
    Ok(NatRule { local, global })
}

/// glibc `inet_pton(AF_INET, …)`: exactly four decimal parts 0..255; a part may start
/// with `0` only when it is the lone digit `0`.
pub fn parse_inet_pton4(s: &str) -> Option<Ipv4Addr> {
    let mut out = [0u8; 4];
    let mut n = 0usize;
    for part in s.split('.') {
        if n >= 4 || part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        if part.len() > 1 && part.starts_with('0') {
            return None;
        }
        let v: u16 = part.parse().ok()?;
        *out.get_mut(n)? = u8::try_from(v).ok()?;
        n += 1;
    }
    (n == 4).then(|| Ipv4Addr::from(out))
}

/// The `--nat-info` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatInfo {
    rules: Vec<NatRule>,
}

impl NatInfo {
    /// Adds one `--nat-info` value.
    ///
    /// # Errors
    /// [`NatInfoError`] on a bad value or a 17th rule.
    pub fn add(&mut self, s: &str) -> Result<(), NatInfoError> {
        let rule = parse_nat_info(s)?;
        if self.rules.len() >= MAX_NAT_INFO_RULES {
            return Err(NatInfoError::TooMany);
        }
        self.rules.push(rule);
        Ok(())
    }

    /// The rules, in command-line order.
    pub fn rules(&self) -> &[NatRule] {
        &self.rules
    }

    /// C `nat_translate_ip`: the global address of the first rule whose local address is
    /// `ip`, else `ip` unchanged.
    pub fn translate(&self, ip: Ipv4Addr) -> Ipv4Addr {
        self.rules
            .iter()
            .find(|r| r.local == ip)
            .map_or(ip, |r| r.global)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_length_bounds() {
        assert!(ProxySecret::from_bytes(&[0; 31]).is_err());
        assert!(ProxySecret::from_bytes(&[0; 32]).is_ok());
        assert!(ProxySecret::from_bytes(&[0; 256]).is_ok());
        assert_eq!(
            ProxySecret::from_bytes(&[0; 257]),
            Err(SecretError::BadLength { len: 257 })
        );
        assert!(ProxySecret::from_bytes(&[]).is_err());
    }

    #[test]
    fn key_select_is_first_four_le() {
        let mut b = vec![0u8; 128];
        b[..4].copy_from_slice(&[0x01, 0x02, 0x03, 0x84]);
        let s = ProxySecret::from_bytes(&b).unwrap();
        assert_eq!(s.key_select(), i32::from_le_bytes([1, 2, 3, 0x84]));
        assert!(s.key_select() < 0);
    }

    #[test]
    fn md5_hex_of_known_input() {
        // MD5 of 32 zero bytes (python: hashlib.md5(bytes(32)).hexdigest()).
        let s = ProxySecret::from_bytes(&[0; 32]).unwrap();
        assert_eq!(s.md5_hex(), "70bc8f4b72a86921468bf8e8441dce51");
        assert!(!format!("{s:?}").contains("00, 00"));
    }

    #[test]
    fn hex16_accepts_both_cases() {
        let v = parse_hex16('S', "0123456789abcdefABCDEF0123456789").unwrap();
        assert_eq!(hex::encode(v), "0123456789abcdefabcdef0123456789");
    }

    #[test]
    fn hex16_errors_match_c() {
        assert_eq!(
            parse_hex16('P', "123").unwrap_err().to_string(),
            "'P' option requires exactly 32 hex digits"
        );
        assert_eq!(
            parse_hex16('P', "0123456789abcdef0123456789abcdeg")
                .unwrap_err()
                .to_string(),
            "'S' option requires exactly 32 hex digits. 'g' is not hexdigit"
        );
        // 33 and 31 characters.
        assert!(parse_hex16('S', &"a".repeat(33)).is_err());
        assert!(parse_hex16('S', &"a".repeat(31)).is_err());
        // Multi-byte characters count in bytes like strlen.
        assert!(parse_hex16('S', &format!("é{}", "a".repeat(30))).is_err());
    }

    #[test]
    fn nat_info_parse_and_translate() {
        let mut n = NatInfo::default();
        n.add("10.0.0.2:203.0.113.5").unwrap();
        n.add("10.0.0.2:198.51.100.1").unwrap();
        let l: Ipv4Addr = "10.0.0.2".parse().unwrap();
        assert_eq!(n.translate(l), "203.0.113.5".parse::<Ipv4Addr>().unwrap());
        let other: Ipv4Addr = "10.0.0.3".parse().unwrap();
        assert_eq!(n.translate(other), other);
        for _ in 0..14 {
            n.add("1.1.1.1:2.2.2.2").unwrap();
        }
        assert_eq!(n.add("1.1.1.1:2.2.2.2"), Err(NatInfoError::TooMany));
    }

    #[test]
    fn nat_info_errors_match_c() {
        assert_eq!(
            parse_nat_info("1.2.3.4").unwrap_err().to_string(),
            "expected <local-addr>:<global-addr> in --nat-info"
        );
        assert_eq!(
            parse_nat_info("1.2.3.4:x").unwrap_err().to_string(),
            "cannot translate host 'x' in --nat-info"
        );
        assert_eq!(
            parse_nat_info("1.2.3:5.6.7.8").unwrap_err().to_string(),
            "cannot translate host '1.2.3' in --nat-info"
        );
        // strrchr: the last colon splits.
        assert_eq!(
            parse_nat_info("a:1.2.3.4:5.6.7.8").unwrap_err(),
            NatInfoError::BadHost("a:1.2.3.4".into())
        );
    }

    #[test]
    fn inet_pton4_rules() {
        assert!(parse_inet_pton4("0.0.0.0").is_some());
        assert!(parse_inet_pton4("255.255.255.255").is_some());
        assert!(parse_inet_pton4("256.0.0.0").is_none());
        assert!(parse_inet_pton4("01.0.0.0").is_none());
        assert!(parse_inet_pton4("1.2.3.4.5").is_none());
        assert!(parse_inet_pton4("1.2.3.").is_none());
        assert!(parse_inet_pton4("127.1").is_none());
    }
}
