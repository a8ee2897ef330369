//! Text forms of what an operator configures: communities (`64500:10`,
//! `no-export`), large communities (`64500:1:2`), announcements (a prefix,
//! or an address that becomes a host route or its aggregate) and the
//! TCP-MD5 password file. Errors say what was wrong and what is accepted.

use std::net::IpAddr;

use ipnet::IpNet;

use super::routes::prefix_for;

/// Well-known communities (RFC 1997, RFC 7999, RFC 8326).
const WELL_KNOWN: &[(&str, u32)] = &[
    ("no-export", 0xFFFF_FF01),
    ("no-advertise", 0xFFFF_FF02),
    ("no-export-subconfed", 0xFFFF_FF03),
    ("blackhole", 0xFFFF_029A),
    ("graceful-shutdown", 0xFFFF_0000),
];

/// `ASN:VALUE` (two 16-bit numbers), a well-known name, or a plain 32-bit number.
pub fn community(s: &str) -> Result<u32, String> {
    let s = s.trim();
    if let Some((_, v)) = WELL_KNOWN.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
        return Ok(*v);
    }
    let bad = || {
        format!(
            "community {s:?} is not ASN:VALUE with two 16-bit numbers (e.g. 64500:10), \
             a 32-bit number or a well-known name (no-export, no-advertise, blackhole, …)"
        )
    };
    match s.split_once(':') {
        Some((a, b)) => {
            let a: u16 = a.parse().map_err(|_| bad())?;
            let b: u16 = b.parse().map_err(|_| bad())?;
            Ok((u32::from(a) << 16) | u32::from(b))
        }
        None => s.parse().map_err(|_| bad()),
    }
}

/// `GLOBAL:LOCAL1:LOCAL2`, three 32-bit numbers (RFC 8092).
pub fn large_community(s: &str) -> Result<(u32, u32, u32), String> {
    let bad =
        || format!("large community {s:?} is not three 32-bit numbers A:B:C (e.g. 4200000000:1:2)");
    let parts: Vec<&str> = s.trim().split(':').collect();
    let [a, b, c] = parts.as_slice() else {
        return Err(bad());
    };
    Ok((
        a.parse().map_err(|_| bad())?,
        b.parse().map_err(|_| bad())?,
        c.parse().map_err(|_| bad())?,
    ))
}

/// A prefix as given, or an address as its host route (or its aggregate of
/// `agg4`/`agg6` bits).
pub fn announcement(s: &str, agg4: Option<u8>, agg6: Option<u8>) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    let ip: IpAddr = s.parse().map_err(|_| {
        format!("{s:?} is neither an address nor a prefix (e.g. 198.51.100.7, 2001:db8::/64)")
    })?;
    let agg = if ip.is_ipv4() { agg4 } else { agg6 };
    prefix_for(ip, agg).ok_or_else(|| {
        format!(
            "aggregation length {} does not fit {ip}",
            agg.unwrap_or_default()
        )
    })
}

/// Announcements from a file: one per line, `#` starts a comment. Every
/// bad line is reported with its number; nothing is taken from a file with
/// errors.
pub fn announcement_file(
    text: &str,
    agg4: Option<u8>,
    agg6: Option<u8>,
) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match announcement(line, agg4, agg6) {
            Ok(n) => out.push(n),
            Err(e) => errors.push(format!("line {}: {e}", i + 1)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        let more = errors.len().saturating_sub(3);
        let mut msg = errors.into_iter().take(3).collect::<Vec<_>>().join("; ");
        if more > 0 {
            msg.push_str(&format!("; and {more} more"));
        }
        Err(msg)
    }
}

/// The TCP-MD5 password from a mounted Secret: one trailing newline (an
/// editor's) is dropped; an empty or over-long password is refused.
pub fn password(raw: &[u8]) -> Result<Vec<u8>, String> {
    let p = raw
        .strip_suffix(b"\r\n")
        .or_else(|| raw.strip_suffix(b"\n"))
        .unwrap_or(raw);
    if p.is_empty() {
        return Err("the TCP-MD5 password is empty".into());
    }
    if p.len() > super::transport::MD5_MAX_KEY {
        return Err(format!(
            "the TCP-MD5 password is {} bytes; the kernel takes at most 80",
            p.len()
        ));
    }
    Ok(p.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communities() {
        assert_eq!(community("64500:10"), Ok((64500 << 16) | 10));
        assert_eq!(community("no-export"), Ok(0xFFFF_FF01));
        assert_eq!(community("4226809866"), Ok(4_226_809_866));
        let e = community("70000:1").unwrap_err();
        assert!(e.contains("16-bit"), "{e}");
        assert!(community("a:b").is_err());
    }

    #[test]
    fn large_communities() {
        assert_eq!(large_community("4200000000:1:2"), Ok((4_200_000_000, 1, 2)));
        assert!(large_community("1:2").is_err());
        assert!(large_community("1:2:3:4").is_err());
        assert!(large_community("1:x:3").is_err());
    }

    #[test]
    fn announcements() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(
            announcement("198.51.100.7", None, None),
            Ok(n("198.51.100.7/32"))
        );
        assert_eq!(
            announcement("2001:db8::7", None, Some(64)),
            Ok(n("2001:db8::/64"))
        );
        assert_eq!(
            announcement("198.51.100.7/24", None, None),
            Ok(n("198.51.100.0/24"))
        );
        assert!(announcement("198.51.100.7", Some(40), None).is_err());
        assert!(
            announcement("nope", None, None)
                .unwrap_err()
                .contains("neither")
        );
    }

    #[test]
    fn announcement_files_report_every_bad_line_and_take_nothing() {
        let ok = announcement_file("# vips\n198.51.100.7\n\n2001:db8::7 # v6\n", None, None);
        assert_eq!(ok.unwrap().len(), 2);
        let e = announcement_file("198.51.100.7\nbad\n10.0.0.1/99\n", None, None).unwrap_err();
        assert!(e.starts_with("line 2: "), "{e}");
        assert!(e.contains("line 3: "), "{e}");
    }

    #[test]
    fn passwords() {
        assert_eq!(password(b"s3cret\n"), Ok(b"s3cret".to_vec()));
        assert_eq!(password(b"s3cret"), Ok(b"s3cret".to_vec()));
        assert!(password(b"\n").is_err());
        assert!(password(&[b'x'; 81]).unwrap_err().contains("at most 80"));
    }
}
