//! `-D` fronting: a connection that is not a valid fake-TLS client goes, byte for byte, to
//! the real site of a domain, so that a prober sees nothing but that website.
//!
//! * [`domains`] — the domain registry: names, addresses, learnt ServerHello profiles.
//! * [`probe`] — the background probe that learns each domain's profile (§4.4.5).
//! * [`splice`] — the byte-for-byte relay (§4.4.6), with idle and half-close bounds.
//! * [`loops`] — refuses relays to this proxy's own addresses.
//! * [`dns`] — name resolution, bounded in time.

pub mod dns;
pub mod domains;
pub mod loops;
pub mod probe;
pub mod splice;
