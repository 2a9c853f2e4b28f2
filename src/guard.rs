//! The SSRF guard (docs/security.md): a template cannot make the dispatcher reach loopback,
//! private, link-local (cloud metadata at 169.254.169.254), CGNAT, unique-local,
//! unspecified or multicast addresses unless their network is allowed (`allowed_networks`).
//!
//! The check runs on the address a connection is about to use: hostnames through the HTTP
//! client's DNS resolver hook (so a name that resolves to a public address when a template is
//! saved and to 10.0.0.1 later — DNS rebinding — is still refused), IP literals before the
//! request is built (the client does not resolve those).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns;
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Where outgoing requests may go.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Networks exempt from the guard.
    pub allowed: Vec<IpNet>,
    /// Refuse plain-http destinations.
    pub https_only: bool,
}

/// A destination the guard refused: the delivery is dead-lettered as `ssrf_blocked`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);

impl NetworkPolicy {
    /// `Err` when `ip` is in a restricted range and no allowed network contains it.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match restricted_range(ip) {
            Some(range) => Err(Blocked(format!(
                "destination address {ip} is {range} and not in allowed_networks"
            ))),
            None => Ok(()),
        }
    }

    /// The checks that need no DNS: the scheme, and the host when it is an IP literal.
    pub fn check_url(&self, url: &url::Url) -> Result<(), Blocked> {
        if self.https_only && url.scheme() != "https" {
            return Err(Blocked(format!(
                "https_only is set and the URL is {}",
                url.scheme()
            )));
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(ip.into()),
            Some(url::Host::Ipv6(ip)) => self.check_ip(ip.into()),
            _ => Ok(()),
        }
    }
}

/// The name of the restricted range `ip` falls in, `None` for a public address.
pub fn restricted_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => restricted_v4(ip),
        IpAddr::V6(ip) => restricted_v6(ip),
    }
}

/// IPv4 ranges of IANA's special-purpose address registry that are not globally
/// reachable (or are reserved, documentation or benchmarking space).
fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "unspecified (0.0.0.0/8)",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "private (RFC 1918)",
        (100, 64..=127, _) => "shared CGNAT space (100.64.0.0/10)",
        (127, ..) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation (TEST-NET)",
        (192, 88, 99) => "deprecated 6to4 relay anycast (192.88.99.0/24)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, ..) => "multicast (224.0.0.0/4)",
        (240..=255, ..) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

/// IPv6 ranges of IANA's special-purpose address registry that are not globally reachable;
/// addresses that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by it.
fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return restricted_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d, deprecated): reaches a.b.c.d on some stacks.
    if segments[..6] == [0; 6] {
        return restricted_v4(embedded(segments[6], segments[7])).or(Some("IPv4-compatible (::/96)"));
    }
    Some(match segments {
        // NAT64 (64:ff9b::/96) embeds the IPv4 address it translates to.
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => return restricted_v4(embedded(hi, lo)),
        [0x0064, 0xff9b, 0x0001, ..] => "local-use NAT64 (64:ff9b:1::/48)",
        [0x0100, 0, 0, 0, ..] => "discard-only (100::/64)",
        [0x2001, 0x0db8, ..] => "documentation (2001:db8::/32)",
        [0x2001, s, ..] if s < 0x0200 => "IETF protocol assignments, Teredo (2001::/23)",
        // 6to4 (2002::/16) embeds the IPv4 address of its relay.
        [0x2002, hi, lo, ..] => return restricted_v4(embedded(hi, lo)),
        [s, ..] if s & 0xfff0 == 0x3ff0 => "documentation (3fff::/20)",
        [0x5f00, ..] => "SRv6 SIDs (5f00::/16)",
        [s, ..] if s & 0xfe00 == 0xfc00 => "unique-local (fc00::/7)",
        [s, ..] if s & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [s, ..] if s & 0xffc0 == 0xfec0 => "site-local, deprecated (fec0::/10)",
        [s, ..] if s & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        _ => return None,
    })
}

/// The DNS resolver of outgoing requests: the system resolver, then the guard on every
/// address it returns. Refused addresses are dropped; a name left with none is refused.
/// Deliveries use it as a tower service (hyper-util's connector), token requests through
/// reqwest's resolver hook.
#[derive(Clone)]
pub struct GuardedResolver {
    pub policy: Arc<NetworkPolicy>,
}

type ResolveError = Box<dyn std::error::Error + Send + Sync>;

impl GuardedResolver {
    async fn resolve(policy: Arc<NetworkPolicy>, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        let mut refusal = None;
        let allowed: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|addr| match policy.check_ip(addr.ip()) {
                Ok(()) => true,
                Err(blocked) => {
                    refusal.get_or_insert(blocked);
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            let why = refusal.map_or_else(|| "resolved to no address".to_string(), |b| b.0);
            return Err(Box::new(Blocked(format!("{host} {why}"))));
        }
        Ok(allowed)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let allowed = Self::resolve(policy, name.as_str()).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

impl tower_service::Service<dns::Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: dns::Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move { Ok(Self::resolve(policy, name.as_str()).await?.into_iter()) })
    }
}

/// The guard's refusal, when it is what made a request fail.
pub fn blocked_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Blocked> {
    crate::telemetry::cause::<Blocked>(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_restricted_range_is_recognised() {
        let restricted = [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            // IANA special-purpose registries beyond the usual private ranges.
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "192.88.99.1",
            "::7f00:1",
            "::8.8.8.8",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "3fff::1",
            "5f00::1",
            "fec0::1",
        ];
        for addr in restricted {
            assert!(
                restricted_range(ip(addr)).is_some(),
                "{addr} should be restricted"
            );
        }
    }

    #[test]
    fn public_addresses_pass() {
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "198.17.255.255",
            "198.20.0.1",
            "192.0.3.1",
        ];
        for addr in public {
            assert_eq!(restricted_range(ip(addr)), None, "{addr} should be public");
        }
    }

    #[test]
    fn the_allow_list_exempts_only_its_networks() {
        let policy = NetworkPolicy {
            allowed: vec!["127.0.0.1/32".parse().unwrap(), "fd00::/8".parse().unwrap()],
            https_only: false,
        };
        assert!(policy.check_ip(ip("127.0.0.1")).is_ok());
        assert!(policy.check_ip(ip("fd00::5")).is_ok());
        let refused = policy.check_ip(ip("127.0.0.2")).unwrap_err();
        assert!(
            refused.0.contains("127.0.0.2") && refused.0.contains("loopback"),
            "{refused}"
        );
        assert!(policy.check_ip(ip("169.254.169.254")).is_err());
        assert!(policy.check_ip(ip("8.8.8.8")).is_ok());
    }

    #[test]
    fn ip_literal_urls_and_plain_http_are_checked_without_dns() {
        let policy = NetworkPolicy {
            allowed: vec![],
            https_only: true,
        };
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(policy.check_url(&url("http://example.test/")).is_err());
        assert!(policy.check_url(&url("https://example.test/")).is_ok());
        assert!(policy.check_url(&url("https://127.0.0.1:8443/")).is_err());
        assert!(policy.check_url(&url("https://[::1]/")).is_err());
        assert!(policy.check_url(&url("https://[::ffff:a00:1]/")).is_err());
    }

    #[test]
    fn a_refusal_is_found_through_wrapping_errors() {
        #[derive(Debug, thiserror::Error)]
        #[error("connect failed")]
        struct Wrapper(#[source] Blocked);
        let err = Wrapper(Blocked("no".into()));
        assert_eq!(blocked_cause(&err), Some(&Blocked("no".into())));
    }
}
