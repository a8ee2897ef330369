//! The node's interfaces, their addresses and carrier, and which interface
//! announces an address: the operator's explicit list if given, else the
//! interface whose subnet holds the address, else the one with the default
//! route of its family. Loopback and container-side interfaces (veth, CNI
//! bridges) are never chosen unless named explicitly. Layer 2 and BGP
//! (next hops) both read them.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::net::IpAddr;

/// One address on one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub interface: String,
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Interface name prefixes that belong to containers or CNI plumbing.
const CONTAINER_PREFIXES: [&str; 10] = [
    "veth",
    "cali",
    "cni",
    "flannel",
    "docker",
    "lxc",
    "cilium",
    "kube-ipvs",
    "vxlan",
    "tunl",
];

fn excluded(name: &str) -> bool {
    name == "lo" || CONTAINER_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn in_subnet(a: &IpAddr, net: &IpAddr, prefix: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            u32::from(*a) & mask == u32::from(*n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            u128::from(*a) & mask == u128::from(*n) & mask
        }
        _ => false,
    }
}

/// The interface to announce `vip` on. `explicit` wins when non-empty (the
/// first listed interface that exists, even a normally excluded one).
pub fn choose(
    vip: &IpAddr,
    explicit: &[String],
    addrs: &[IfAddr],
    default_route: Option<&str>,
) -> Option<String> {
    if !explicit.is_empty() {
        return explicit
            .iter()
            .find(|e| addrs.iter().any(|a| &a.interface == *e))
            .cloned();
    }
    let best = addrs
        .iter()
        .filter(|a| !excluded(&a.interface) && in_subnet(vip, &a.addr, a.prefix))
        .max_by_key(|a| a.prefix);
    if let Some(a) = best {
        return Some(a.interface.clone());
    }
    default_route.filter(|d| !excluded(d)).map(str::to_string)
}

/// Addresses of every interface (getifaddrs).
pub fn addresses() -> io::Result<Vec<IfAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: the family field is valid for every sockaddr.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let (addr, prefix) = match family {
            libc::AF_INET => {
                // SAFETY: AF_INET means both are sockaddr_in.
                let (a, m) = unsafe {
                    (
                        &*ifa.ifa_addr.cast::<libc::sockaddr_in>(),
                        &*ifa.ifa_netmask.cast::<libc::sockaddr_in>(),
                    )
                };
                (
                    IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()),
                    u32::from_be(m.sin_addr.s_addr).count_ones() as u8,
                )
            }
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 means both are sockaddr_in6.
                let (a, m) = unsafe {
                    (
                        &*ifa.ifa_addr.cast::<libc::sockaddr_in6>(),
                        &*ifa.ifa_netmask.cast::<libc::sockaddr_in6>(),
                    )
                };
                (
                    IpAddr::from(a.sin6_addr.s6_addr),
                    u128::from_be_bytes(m.sin6_addr.s6_addr).count_ones() as u8,
                )
            }
            _ => continue,
        };
        out.push(IfAddr {
            interface: name,
            addr,
            prefix,
        });
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The interface holding the default route of `vip`'s family, from /proc.
pub fn default_route(vip: &IpAddr) -> Option<String> {
    match vip {
        IpAddr::V4(_) => std::fs::read_to_string("/proc/net/route")
            .ok()
            .and_then(|t| default_v4(&t)),
        IpAddr::V6(_) => std::fs::read_to_string("/proc/net/ipv6_route")
            .ok()
            .and_then(|t| default_v6(&t)),
    }
}

fn default_v4(table: &str) -> Option<String> {
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })
}

fn default_v6(table: &str) -> Option<String> {
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() == 10 && f[0].chars().all(|c| c == '0') && f[1] == "00" && f[9] != "lo")
            .then(|| f[9].to_string())
    })
}

/// Whether interface `name` has carrier now (sysfs). One that cannot be
/// read counts as up: a missing file must never withdraw announcements;
/// the netlink link monitor reports real changes.
pub fn carrier(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/carrier"))
        .map(|c| c.trim() == "1")
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: &str, addr: &str, prefix: u8) -> IfAddr {
        IfAddr {
            interface: i.into(),
            addr: addr.parse().unwrap(),
            prefix,
        }
    }

    #[test]
    fn subnet_then_default_route_never_loopback_or_veth() {
        let addrs = [
            a("lo", "127.0.0.1", 8),
            a("eth0", "192.0.2.10", 24),
            a("eth1", "198.51.100.10", 24),
            a("veth1234", "203.0.113.1", 24),
            a("eth1", "2001:db8:1::10", 64),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            choose(&ip("198.51.100.77"), &[], &addrs, Some("eth0")).as_deref(),
            Some("eth1")
        );
        assert_eq!(
            choose(&ip("2001:db8:1::99"), &[], &addrs, None).as_deref(),
            Some("eth1")
        );
        assert_eq!(
            choose(&ip("203.0.113.9"), &[], &addrs, Some("eth0")).as_deref(),
            Some("eth0"),
            "veth skipped"
        );
        assert_eq!(
            choose(&ip("127.0.0.9"), &[], &addrs, None),
            None,
            "never loopback"
        );
        assert_eq!(
            choose(&ip("10.9.9.9"), &[], &addrs, Some("eth0")).as_deref(),
            Some("eth0")
        );
        assert_eq!(choose(&ip("10.9.9.9"), &[], &addrs, Some("veth9")), None);
        let explicit = vec!["veth1234".to_string()];
        assert_eq!(
            choose(&ip("10.9.9.9"), &explicit, &addrs, Some("eth0")).as_deref(),
            Some("veth1234"),
            "asked for"
        );
        assert_eq!(
            choose(&ip("10.9.9.9"), &["nope".to_string()], &addrs, Some("eth0")),
            None
        );
    }

    #[test]
    fn reads_default_routes_from_proc_tables() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                  eth1\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_v4(v4).as_deref(), Some("eth1"));
        let v6 = "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003     eth2\n";
        assert_eq!(default_v6(v6).as_deref(), Some("eth2"));
    }

    #[test]
    fn getifaddrs_sees_loopback() {
        let all = addresses().unwrap();
        assert!(
            all.iter()
                .any(|a| a.interface == "lo" && a.addr == IpAddr::from([127, 0, 0, 1])),
            "{all:?}"
        );
    }
}
