//! Which IP addresses a plugin may reach without the operator's say-so:
//! public ones. An allowed host name can resolve anywhere (by mistake, or by
//! whoever controls its DNS), so the address is checked, not the name:
//! loopback, private (RFC 1918, IPv6 unique local), link-local (the cloud
//! metadata service at 169.254.169.254), shared (RFC 6598, where Alibaba
//! Cloud's metadata service 100.100.100.200 lives), unspecified, multicast,
//! broadcast and reserved addresses are refused, also when written inside
//! an IPv6 address (IPv4-mapped, NAT64). A channel with
//! `allow_private_network = true` may reach them all.
//!
//! Owns the classification; the HTTP hooks and the socket check apply it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is not a public address, or `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "an unspecified (\"this network\") address",
        (127, _, _) => "a loopback address",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "a private (RFC 1918) address",
        (169, 254, _) => "a link-local address (the cloud metadata service lives there)",
        (100, 64..=127, _) => "a shared (RFC 6598) address (cloud internal services live there)",
        (192, 0, 0) | (198, 18..=19, _) => "a reserved address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let s = ip.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64: the IPv4 address is the last 32 bits.
        let [_, _, _, _, _, _, hi, lo] = s;
        return non_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    Some(match s[0] {
        _ if ip.is_unspecified() => "an unspecified address",
        _ if ip.is_loopback() => "a loopback address",
        0xfc00..=0xfdff => "a private (unique local) address",
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a site-local address",
        0xff00..=0xffff => "a multicast address",
        // ::/96 (IPv4-compatible, deprecated) and the rest of ::/8.
        0 => "a reserved address",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(non_public(ip).is_some(), "{refused} is not public");
        }
        for allowed in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = allowed.parse().unwrap();
            assert_eq!(non_public(ip), None, "{allowed} is public");
        }
        assert!(non_public("169.254.169.254".parse().unwrap())
            .unwrap()
            .contains("metadata"));
    }
}
