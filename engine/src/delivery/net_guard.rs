//! The SSRF guard: outgoing requests go only to addresses the network policy
//! permits, checked on the address actually connected to.
//!
//! Endpoint URLs are typed in by users, so without a guard the engine would
//! call into the operator's own network (loopback admin ports, cloud metadata,
//! private services) on their behalf. The guard refuses every special-purpose
//! range — loopback, private, link-local (cloud metadata included), CGNAT,
//! multicast, unspecified, broadcast, reserved, documentation and
//! benchmarking ranges, and the IPv4-mapped, NAT64 and 6to4 forms of
//! IPv4 addresses in those ranges — unless the operator allow-lists a CIDR or
//! a host name (`--allow-network`).
//!
//! Names are resolved by [`GuardedResolver`], which hands reqwest only
//! permitted addresses: the check is on the resolved address that is then
//! connected to, so DNS rebinding (a name that resolves to a public address
//! when checked and to a private one when used) cannot slip past. IP
//! literals never reach a resolver, so the sender checks them before
//! sending ([`NetworkPolicy::check_url`]). A refusal says which policy
//! refused it, never whether anything listens there.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// What outgoing requests may reach.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Ranges permitted even though they are special-purpose.
    allow_nets: Vec<IpNet>,
    /// Host names permitted whatever they resolve to (lowercase).
    allow_hosts: Vec<String>,
    /// Fixed resolutions (`--resolve name=address`), checked like any other.
    overrides: HashMap<String, Vec<IpAddr>>,
}

impl NetworkPolicy {
    /// A policy from `--allow-network` items (CIDRs, addresses or host
    /// names) and `--resolve name=address` items.
    pub fn new(allow: &[String], resolve: &[String]) -> Result<NetworkPolicy, String> {
        let mut policy = NetworkPolicy::default();
        for item in allow {
            let item = item.trim();
            if let Ok(net) = item.parse::<IpNet>() {
                policy.allow_nets.push(net);
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                policy.allow_nets.push(IpNet::from(ip));
            } else if !item.is_empty()
                && item
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                policy.allow_hosts.push(item.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "--allow-network {item:?}: not a CIDR (10.0.0.0/8), an address or a host name"
                ));
            }
        }
        for item in resolve {
            let (name, addr) = item
                .split_once('=')
                .ok_or_else(|| format!("--resolve {item:?}: expected NAME=ADDRESS"))?;
            let addr: IpAddr = addr
                .trim()
                .parse()
                .map_err(|e| format!("--resolve {item:?}: {e}"))?;
            policy
                .overrides
                .entry(name.trim().to_ascii_lowercase())
                .or_default()
                .push(addr);
        }
        Ok(policy)
    }

    /// Whether the policy lets requests reach `ip`; the error names why not.
    pub fn permits(&self, ip: IpAddr) -> Result<(), String> {
        // An IPv4-mapped address reaches the IPv4 address inside it.
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
            IpAddr::V4(_) => None,
        };
        let Some(range) = special_range(ip) else {
            return Ok(());
        };
        let allowed = |ip: IpAddr| self.allow_nets.iter().any(|n| n.contains(&ip));
        if allowed(ip) || mapped.is_some_and(|v4| allowed(IpAddr::V4(v4))) {
            return Ok(());
        }
        let what = match mapped.and_then(|v4| special_v4(v4).map(|r| (v4, r))) {
            Some((v4, inner)) => format!("{ip} is the IPv4-mapped form of {v4} ({inner})"),
            None => format!("{ip} is special-purpose ({range})"),
        };
        Err(format!(
            "{what}; requests to it are refused unless the operator allow-lists it (--allow-network)"
        ))
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allow_hosts.contains(&host)
    }

    /// Checks what can be checked without resolving: the scheme, no
    /// credentials, and an IP-literal host.
    pub fn check_url(&self, url: &url::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "scheme must be http or https, got {}",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain credentials".into());
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.permits(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.permits(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) if !name.is_empty() => Ok(()),
            _ => Err("must have a host".into()),
        }
    }

    /// Resolves `host` and keeps the permitted addresses; an error when none
    /// is permitted (or the name does not resolve).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let key = host.to_ascii_lowercase();
        let addrs: Vec<SocketAddr> = match self.overrides.get(&key) {
            Some(fixed) => fixed.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
            None => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("{host} does not resolve: {e}"))?
                .collect(),
        };
        if self.host_allowed(host) {
            return Ok(addrs);
        }
        let mut refused = None;
        let permitted: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.permits(a.ip()) {
                Ok(()) => true,
                Err(why) => {
                    refused.get_or_insert(why);
                    false
                }
            })
            .collect();
        if permitted.is_empty() {
            return Err(match refused {
                Some(why) => format!("{host} resolves only to refused addresses: {why}"),
                None => format!("{host} does not resolve"),
            });
        }
        Ok(permitted)
    }
}

/// The special-purpose range `ip` is in, if any.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        (0, ..) => "\"this network\" (0.0.0.0/8)",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local (cloud metadata)",
        (100, 64..=127, _) => "shared (CGNAT, 100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignment (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (192, 88, 99) => "6to4 relay anycast",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        (240..=255, ..) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    // IPv4 carried in IPv6: judged as the IPv4 address it reaches.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return special_v4(v4).map(|_| "IPv4-mapped special-purpose");
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..3] == [0x64, 0xff9b, 1] {
        // NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48).
        let v4 = Ipv4Addr::new(
            (segments[6] >> 8) as u8,
            segments[6] as u8,
            (segments[7] >> 8) as u8,
            segments[7] as u8,
        );
        return Some(if special_v4(v4).is_some() {
            "NAT64 form of a special-purpose IPv4"
        } else {
            "NAT64"
        });
    }
    if segments[0] == 0x2002 {
        // 6to4: the IPv4 address is in the next 32 bits.
        let v4 = Ipv4Addr::new(
            (segments[1] >> 8) as u8,
            segments[1] as u8,
            (segments[2] >> 8) as u8,
            segments[2] as u8,
        );
        if special_v4(v4).is_some() {
            return Some("6to4 form of a special-purpose IPv4");
        }
    }
    Some(match segments[0] {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        // ::a.b.c.d (deprecated IPv4-compatible) and the rest of ::/96.
        _ if segments[..6] == [0; 6] => "IPv4-compatible (::/96)",
        0xfc00..=0xfdff => "unique local (private)",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local (deprecated)",
        0xff00..=0xffff => "multicast",
        0x2001 if segments[1] == 0x0db8 => "documentation",
        0x2001 if segments[1] < 0x0200 => "IETF protocol assignment (2001::/23)",
        0x0100 if segments[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        0x3fff if segments[1] < 0x1000 => "documentation",
        // AWS's IPv6 instance metadata address lives in a unique local range,
        // already refused above.
        _ => return None,
    })
}

/// A reqwest resolver that hands out only permitted addresses.
pub struct GuardedResolver {
    pub policy: Arc<NetworkPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs = policy
                .resolve(name.as_str(), 0)
                .await
                .map_err(|why| -> Box<dyn std::error::Error + Send + Sync> { why.into() })?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        special_range(s.parse().unwrap()).is_some()
    }

    #[test]
    fn special_ranges_are_refused_and_public_ones_are_not() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            assert!(refused(s), "{s} must be refused");
        }
        for s in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "2002:5db8:d822::",
        ] {
            assert!(!refused(s), "{s} is public");
        }
    }

    #[test]
    fn the_allow_list_lets_ranges_and_hosts_through() {
        let p = NetworkPolicy::new(&["127.0.0.0/8".into(), "::1".into()], &[]).unwrap();
        assert!(p.permits("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.permits("::1".parse().unwrap()).is_ok());
        let err = p.permits("10.0.0.1".parse().unwrap()).unwrap_err();
        assert!(
            err.contains("private") && err.contains("--allow-network"),
            "{err}"
        );
        assert!(NetworkPolicy::new(&["not a net!".into()], &[]).is_err());
    }

    #[test]
    fn url_forms_of_loopback_are_all_refused() {
        let p = NetworkPolicy::default();
        for u in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            let url = url::Url::parse(u).unwrap();
            assert!(p.check_url(&url).is_err(), "{u} must be refused");
        }
        let url = url::Url::parse("http://user:pw@example.com/").unwrap();
        assert!(p.check_url(&url).unwrap_err().contains("credentials"));
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let p = NetworkPolicy::new(&[], &["rebind.test=127.0.0.1".into()]).unwrap();
        assert!(p.resolve("localhost", 80).await.is_err());
        let err = p.resolve("rebind.test", 80).await.unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        let open =
            NetworkPolicy::new(&["127.0.0.0/8".into()], &["rebind.test=127.0.0.1".into()]).unwrap();
        assert_eq!(
            open.resolve("rebind.test", 8080).await.unwrap(),
            vec!["127.0.0.1:8080".parse().unwrap()]
        );
    }
}
