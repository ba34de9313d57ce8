//! ClientHello validation on the proxy side (§4.4.1 in the order of §12.1).

use super::replay::ReplayCheck;
use super::wire::{be16, MAX_CLIENT_HELLO_LEN, RANDOM_LEN, RANDOM_OFFSET};
use crate::protocol::crypto::hmac_sha256;

/// The index of the default domain in the `-D` list: the first one given.
pub const DEFAULT_DOMAIN: usize = 0;

/// The fixed offset where C starts parsing after `legacy_session_id` (it assumes 32 bytes).
const AFTER_SESSION_ID: usize = RANDOM_OFFSET + RANDOM_LEN + 1 + 32;

/// Timestamps more than this many seconds in the future are rejected.
const MAX_FUTURE_SECS: i64 = 3;

/// Timestamps at least this many seconds in the past are rejected (unless newer than the
/// oldest cached random + 3).
const MAX_PAST_SECS: i64 = 600;

/// A ClientHello the proxy accepted: everything the ServerHello and the session need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedHello {
    /// Which `-S` secret matched (index into the `secrets` passed in).
    pub secret_index: usize,
    /// The hello's `client_random` as received (record bytes 11..43).
    pub client_random: [u8; 32],
    /// Record bytes 44..76, echoed as the ServerHello's session id (C copies these 32
    /// bytes whatever the declared session-id length is).
    pub session_id: [u8; 32],
    /// The chosen suite's second byte: the first non-GREASE suite is `13 01|02|03`.
    pub cipher_suite: u8,
    /// The SNI's index in the `-D` list.
    pub domain: usize,
    /// The client's timestamp, unmasked from `client_random[28..32]`.
    pub timestamp: i32,
}

/// Why a ClientHello was rejected, and which `-D` domain (index) to splice the connection to.
///
/// The variants follow C's checks in order; `domain` is the SNI's domain when it is known,
/// else [`DEFAULT_DOMAIN`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloReject {
    /// Not one `16 03 01 <L>` record of exactly `5 + L` bytes (a caller error: the
    /// classification guarantees the header and the runtime buffers exactly one record).
    #[error("not a single TLS handshake record")]
    Malformed {
        /// Where to splice.
        domain: usize,
    },
    /// No SNI, a malformed one, or one that is not a `-D` name (C: "Receive request for
    /// unknown domain").
    #[error("unknown or missing SNI")]
    UnknownSni {
        /// Where to splice: always the default domain.
        domain: usize,
    },
    /// More bytes than the one record were buffered ("Too much data in ClientHello").
    #[error("{extra} bytes buffered after the ClientHello record")]
    TooMuchData {
        /// Where to splice.
        domain: usize,
        /// How many extra bytes.
        extra: usize,
    },
    /// The record is longer than [`MAX_CLIENT_HELLO_LEN`] ("Too big ClientHello").
    #[error("ClientHello of {len} bytes is longer than 4096")]
    TooBig {
        /// Where to splice.
        domain: usize,
        /// The record length, header included.
        len: usize,
    },
    /// The client random's first 16 bytes are in the replay cache.
    #[error("client random seen before")]
    Replay {
        /// Where to splice.
        domain: usize,
    },
    /// No secret's HMAC matches `client_random[0..28]`.
    #[error("client random matches no secret")]
    BadHmac {
        /// Where to splice.
        domain: usize,
    },
    /// The timestamp is more than 3 s in the future.
    #[error("timestamp {timestamp} is in the future")]
    FutureTimestamp {
        /// Where to splice.
        domain: usize,
        /// The unmasked timestamp.
        timestamp: i32,
    },
    /// The timestamp is 600 s or more in the past (and not newer than the oldest cached
    /// random + 3).
    #[error("timestamp {timestamp} is too old")]
    StaleTimestamp {
        /// Where to splice.
        domain: usize,
        /// The unmasked timestamp.
        timestamp: i32,
    },
    /// The cipher-suite list overruns the record, or its first non-GREASE suite is not
    /// `13 01|02|03` ("Can't find supported cipher suite").
    #[error("no supported cipher suite")]
    BadCipherSuite {
        /// Where to splice.
        domain: usize,
    },
}

impl HelloReject {
    /// The index of the `-D` domain to splice the connection to.
    pub fn splice_domain(&self) -> usize {
        match *self {
            Self::Malformed { domain }
            | Self::UnknownSni { domain }
            | Self::TooMuchData { domain, .. }
            | Self::TooBig { domain, .. }
            | Self::Replay { domain }
            | Self::BadHmac { domain }
            | Self::FutureTimestamp { domain, .. }
            | Self::StaleTimestamp { domain, .. }
            | Self::BadCipherSuite { domain } => domain,
        }
    }

    /// The rejection class as a stable name (used by the vectors and in logs).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "Malformed",
            Self::UnknownSni { .. } => "UnknownSni",
            Self::TooMuchData { .. } => "TooMuchData",
            Self::TooBig { .. } => "TooBig",
            Self::Replay { .. } => "Replay",
            Self::BadHmac { .. } => "BadHmac",
            Self::FutureTimestamp { .. } => "FutureTimestamp",
            Self::StaleTimestamp { .. } => "StaleTimestamp",
            Self::BadCipherSuite { .. } => "BadCipherSuite",
        }
    }
}

/// Finds the SNI of a ClientHello the way C does and returns its index in `domains`.
///
/// `hello` is the buffered bytes (C looks at the first `min(buffered, 4096)`; this function
/// takes what it is given, so pass at most 4096). Parsing starts at the fixed offset 76
/// (a 32-byte session id is assumed), skips the cipher suites and 4 more bytes (one
/// compression method and the extensions length), then walks extensions to the end of the
/// bytes, ignoring the declared extensions length, up to the first of type 0. That one must
/// hold exactly one host_name (list length = ext length − 2, type 0, name length = ext
/// length − 5) without NUL bytes, equal byte for byte to a `-D` name.
pub fn sni_domain(hello: &[u8], domains: &[String]) -> Option<usize> {
    let len = hello.len();
    let mut pos = AFTER_SESSION_ID;
    let cs_len = be16(hello, pos)?;
    pos += 2;
    pos = pos.checked_add(cs_len + 4).filter(|&p| p <= len)?;
    loop {
        let id = be16(hello, pos)?;
        let ext_len = be16(hello, pos + 2)?;
        pos += 4;
        if pos + ext_len > len {
            return None;
        }
        if id == 0 {
            if pos + 5 > len {
                return None;
            }
            let inner = be16(hello, pos)?;
            if inner + 2 != ext_len {
                return None;
            }
            if hello.get(pos + 2) != Some(&0) {
                return None;
            }
            let name_len = be16(hello, pos + 3)?;
            if name_len + 5 != ext_len {
                return None;
            }
            let name = hello.get(pos + 5..pos + 5 + name_len)?;
            if name.contains(&0) {
                return None;
            }
            return domains.iter().position(|d| d.as_bytes() == name);
        }
        pos += ext_len;
    }
}

/// A ClientHello that passed the checks before the replay cache: the caller asks its replay
/// cache about [`HelloStart::key`] and passes the answer to [`finish_client_hello`].
///
/// From [`authenticate_client_hello`] (SNI, one record, size, then the HMAC: only a hello
/// made with a `-S` secret reaches the cache) or, in C's order, from
/// [`start_client_hello`] (the HMAC is checked by [`finish_client_hello`], after the cache
/// took the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloStart {
    /// The replay-cache key: the first 16 bytes of `client_random`.
    pub key: [u8; 16],
    /// The SNI's index in the `-D` list.
    pub domain: usize,
    /// The HMAC's verdict, when it was checked before the cache.
    pub auth: Option<HelloAuth>,
}

/// A ClientHello's `client_random` matched a secret's HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloAuth {
    /// Which `-S` secret matched (index into the `secrets` passed in).
    pub secret_index: usize,
    /// The client's timestamp, unmasked from `client_random[28..32]`.
    pub timestamp: i32,
}

/// What the replay cache answered about a [`HelloStart::key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayAnswer {
    /// The key was not cached (it is now).
    pub fresh: bool,
    /// The insertion time of the oldest cached entry, if any (see
    /// [`super::ReplayCheck::oldest_time`]).
    pub oldest: Option<i64>,
}

/// Validates a fake-TLS ClientHello record with a replay cache at hand:
/// [`authenticate_client_hello`], the cache, then [`finish_client_hello`].
///
/// * `record`: the whole record, `16 03 01 <L>` and `L` bytes (see
///   [`super::Classification::FakeTls`]).
/// * `buffered_extra`: how many bytes were buffered after the record (must be 0).
/// * `domains`: the `-D` names; the first is the default domain.
/// * `secrets`: the `-S` secrets, tried in order.
/// * `replay`: the replay cache; it is asked after the HMAC check (C asks it before).
///
/// Checks: SNI (unknown → [`HelloReject::UnknownSni`] to the default domain), exactly one
/// record, `5 + L ≤ 4096`, HMAC-SHA256 of the record with the random zeroed against
/// `client_random[0..28]`, replay cache (lookup and insert; a full cache counts as a
/// replay), timestamp `LE_i32(H[28..32] ^ random[28..32])`
/// (rejected if `> now + 3`; accepted if `> oldest cached + 3`; else accepted if
/// `> now − 600`), then the cipher suite at offset 76 after leading GREASE.
///
/// The port-80 check (C's second step) is the runtime's: see [`sni_domain`].
///
/// Divergence (order): C puts the random in its cache before checking the HMAC, so anybody
/// who knows a `-D` name can fill the cache; here only hellos made with a secret reach it.
/// A hello with a bad HMAC *and* a cached random is [`HelloReject::BadHmac`] here,
/// [`HelloReject::Replay`] in C; both are fronted to the same domain, only counters differ.
///
/// Divergence: with extra bytes buffered, C's SNI walk may run on into them (it sees the
/// first `min(buffered, 4096)` bytes). Here it stops at the record's end; this can only
/// change which domain a [`HelloReject::TooMuchData`] hello is spliced to.
///
/// # Errors
/// The [`HelloReject`] class and the domain to splice to.
pub fn validate_client_hello(
    record: &[u8],
    buffered_extra: usize,
    domains: &[String],
    secrets: &[[u8; 16]],
    now_unix: i64,
    replay: &mut impl ReplayCheck,
) -> Result<AcceptedHello, HelloReject> {
    let start = authenticate_client_hello(record, buffered_extra, domains, secrets)?;
    let answer = ReplayAnswer {
        fresh: replay.check_and_insert(start.key, now_unix),
        oldest: replay.oldest_time(),
    };
    finish_client_hello(record, start, answer, secrets, now_unix)
}

/// The checks before the replay cache in C's order (C's steps 1, 3, 4): the record's shape,
/// the SNI, nothing buffered after the record, and its size. The HMAC is left to
/// [`finish_client_hello`], after the cache took the key; [`authenticate_client_hello`]
/// checks it first, so that the cache cannot be filled without a secret.
///
/// # Errors
/// The [`HelloReject`] class and the domain to splice to.
pub fn start_client_hello(
    record: &[u8],
    buffered_extra: usize,
    domains: &[String],
) -> Result<HelloStart, HelloReject> {
    let well_formed = record.get(..3) == Some(&[0x16, 0x03, 0x01][..])
        && be16(record, 3).is_some_and(|l| 5 + l == record.len());
    if !well_formed {
        return Err(HelloReject::Malformed {
            domain: DEFAULT_DOMAIN,
        });
    }

    // 1. SNI, in the first 4096 bytes.
    let read_len = record.len().min(MAX_CLIENT_HELLO_LEN);
    let domain = sni_domain(&record[..read_len], domains).ok_or(HelloReject::UnknownSni {
        domain: DEFAULT_DOMAIN,
    })?;

    // 3. Exactly one record buffered.
    if buffered_extra > 0 {
        return Err(HelloReject::TooMuchData {
            domain,
            extra: buffered_extra,
        });
    }
    // 4. 5 + L <= 4096.
    if record.len() > MAX_CLIENT_HELLO_LEN {
        return Err(HelloReject::TooBig {
            domain,
            len: record.len(),
        });
    }

    // 5. The replay cache's key (in C's order, the caller asks the cache now).
    let mut key = [0u8; 16];
    key.copy_from_slice(&record[RANDOM_OFFSET..RANDOM_OFFSET + 16]);
    Ok(HelloStart {
        key,
        domain,
        auth: None,
    })
}

/// The checks before the replay cache, HMAC included: [`start_client_hello`]'s, then the
/// HMAC-SHA256 of the record (random zeroed) under each of `secrets` against
/// `client_random[0..28]`. Only a hello that passes reaches the replay cache, so the cache
/// cannot be filled without a secret.
///
/// # Errors
/// The [`HelloReject`] class and the domain to splice to.
pub fn authenticate_client_hello(
    record: &[u8],
    buffered_extra: usize,
    domains: &[String],
    secrets: &[[u8; 16]],
) -> Result<HelloStart, HelloReject> {
    let start = start_client_hello(record, buffered_extra, domains)?;
    let auth = check_hmac(record, start.domain, secrets)?;
    Ok(HelloStart {
        auth: Some(auth),
        ..start
    })
}

/// C's step 6: the HMAC of `record` with the random zeroed, under each secret in turn,
/// against `client_random[0..28]`; the timestamp is unmasked with the matching HMAC.
fn check_hmac(
    record: &[u8],
    domain: usize,
    secrets: &[[u8; 16]],
) -> Result<HelloAuth, HelloReject> {
    let client_random = record
        .get(RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN)
        .ok_or(HelloReject::Malformed { domain })?;
    let zeros = [0u8; RANDOM_LEN];
    let parts: [&[u8]; 3] = [
        &record[..RANDOM_OFFSET],
        &zeros,
        &record[RANDOM_OFFSET + RANDOM_LEN..],
    ];
    let (secret_index, expected) = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| (i, hmac_sha256(s, &parts)))
        .find(|(_, h)| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                &h[..28],
                &client_random[..28],
            ))
        })
        .ok_or(HelloReject::BadHmac { domain })?;
    let mut mask = [0u8; 4];
    for (i, m) in mask.iter_mut().enumerate() {
        *m = expected[28 + i] ^ client_random[28 + i];
    }
    Ok(HelloAuth {
        secret_index,
        timestamp: i32::from_le_bytes(mask),
    })
}

/// The checks after the replay cache (C's steps 5–8): the cache's answer, the HMAC (unless
/// [`HelloStart::auth`] already holds its verdict; then `secrets` is not used), the
/// timestamp and the cipher suite. `start` must come from [`authenticate_client_hello`] or
/// [`start_client_hello`] on the same `record`.
///
/// # Errors
/// The [`HelloReject`] class and the domain to splice to.
pub fn finish_client_hello(
    record: &[u8],
    start: HelloStart,
    replay: ReplayAnswer,
    secrets: &[[u8; 16]],
    now_unix: i64,
) -> Result<AcceptedHello, HelloReject> {
    let domain = start.domain;
    if !replay.fresh {
        return Err(HelloReject::Replay { domain });
    }
    let mut client_random = [0u8; 32];
    let random = record
        .get(RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN)
        .ok_or(HelloReject::Malformed { domain })?;
    client_random.copy_from_slice(random);

    // 6. HMAC with the random zeroed (already done if `start` was authenticated).
    let HelloAuth {
        secret_index,
        timestamp,
    } = match start.auth {
        Some(auth) => auth,
        None => check_hmac(record, domain, secrets)?,
    };

    // 7. Timestamp.
    let ts = i64::from(timestamp);
    if ts > now_unix + MAX_FUTURE_SECS {
        return Err(HelloReject::FutureTimestamp { domain, timestamp });
    }
    let newer_than_cache = replay
        .oldest
        .is_some_and(|oldest| ts > oldest + MAX_FUTURE_SECS);
    if !newer_than_cache && ts <= now_unix - MAX_PAST_SECS {
        return Err(HelloReject::StaleTimestamp { domain, timestamp });
    }

    // 8. Cipher suite at 76, after leading GREASE.
    let mut pos = AFTER_SESSION_ID;
    let mut cs_len = be16(record, pos).ok_or(HelloReject::BadCipherSuite { domain })?;
    pos += 2;
    if pos + cs_len > record.len() {
        return Err(HelloReject::BadCipherSuite { domain });
    }
    let is_grease = |b: u8| b & 0x0f == 0x0a;
    while cs_len >= 2 && is_grease(record[pos]) && is_grease(record[pos + 1]) {
        cs_len -= 2;
        pos += 2;
    }
    if cs_len <= 1 || record[pos] != 0x13 || !(0x01..=0x03).contains(&record[pos + 1]) {
        return Err(HelloReject::BadCipherSuite { domain });
    }
    let cipher_suite = record[pos + 1];

    let mut session_id = [0u8; 32];
    session_id.copy_from_slice(&record[RANDOM_OFFSET + RANDOM_LEN + 1..AFTER_SESSION_ID]);
    Ok(AcceptedHello {
        secret_index,
        client_random,
        session_id,
        cipher_suite,
        domain,
        timestamp,
    })
}

#[cfg(test)]
mod tests;
