//! Probing a TLS listener the way an auditor does, with Debian's
//! `openssl s_client`: which protocol versions and TLS 1.2 suites it
//! accepts, and which certificate it serves. The client is told to offer
//! everything (`@SECLEVEL=0`) so a refusal is the server's, not OpenSSL's.

use std::process::Command;

/// Where the listener is.
pub enum Target {
    Tcp(String),
    Unix(std::path::PathBuf),
}

impl Target {
    fn args(&self) -> Vec<String> {
        match self {
            Target::Tcp(a) => vec!["-connect".into(), a.clone()],
            Target::Unix(p) => vec!["-unix".into(), p.display().to_string()],
        }
    }
}

/// One handshake with `extra` client options: whether it completed, and
/// what openssl printed.
pub fn handshake(t: &Target, extra: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("s_client")
        .args(t.args())
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client (apt: openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every TLS 1.2-and-older suite this OpenSSL knows, by OpenSSL name.
pub fn all_tls12_suites() -> Vec<String> {
    let out = Command::new("openssl")
        .args(["ciphers", "-tls1_2", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"])
        .output()
        .expect("openssl ciphers");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(':')
        // TLS 1.3 suites are listed too; -cipher does not apply to them.
        .filter(|c| !c.starts_with("TLS_"))
        .map(str::to_string)
        .collect()
}

/// The TLS 1.2 suites the server accepts, each tried alone.
pub fn accepted_tls12_suites(t: &Target) -> Vec<String> {
    all_tls12_suites()
        .into_iter()
        .filter(|s| {
            let cipher = format!("{s}:@SECLEVEL=0");
            handshake(t, &["-tls1_2", "-cipher", &cipher]).0
        })
        .collect()
}

/// Whether the server completes a handshake at `version` (`-tls1`,
/// `-tls1_1`, `-tls1_2`, `-tls1_3`) with the client offering everything.
pub fn accepts_version(t: &Target, version: &str) -> (bool, String) {
    handshake(t, &[version, "-cipher", "ALL:@SECLEVEL=0"])
}

/// The leaf certificate served (PEM).
pub fn served_leaf(t: &Target) -> String {
    let (ok, text) = handshake(t, &["-showcerts"]);
    assert!(ok, "handshake for the certificate: {text}");
    let begin = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text[begin..].find("-----END CERTIFICATE-----").unwrap() + begin;
    format!("{}-----END CERTIFICATE-----\n", &text[begin..end])
}

/// `openssl ARGS` with `input` on its standard input.
pub fn openssl(args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run openssl (apt: openssl)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// `openssl x509 -noout ARGS` on `pem`: (success, output).
pub fn x509(pem: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["x509", "-noout"];
    all.extend(args);
    let out = openssl(&all, pem.as_bytes());
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// Strong TLS 1.2 suites: ephemeral ECDH key exchange, AEAD ciphers.
pub fn is_strong_tls12_suite(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("ECDHE-ECDSA-")
        .or_else(|| name.strip_prefix("ECDHE-RSA-"))
    else {
        return false;
    };
    matches!(
        rest,
        "AES128-GCM-SHA256" | "AES256-GCM-SHA384" | "CHACHA20-POLY1305"
    )
}

/// Checks `t` offers TLS 1.2 and 1.3 only, and in TLS 1.2 strong suites
/// only; returns the accepted TLS 1.2 suites.
pub fn assert_modern_only(t: &Target, what: &str) -> Vec<String> {
    for old in ["-tls1", "-tls1_1"] {
        let (ok, text) = accepts_version(t, old);
        assert!(!ok, "{what} accepted {old}:\n{text}");
        // An alert from the server (rustls answers an old ClientHello with
        // handshake_failure), not the client declining to offer it.
        assert!(
            text.contains("SSL alert number 40") || text.contains("SSL alert number 70"),
            "{what}: {old} refused for another reason:\n{text}"
        );
    }
    for modern in ["-tls1_2", "-tls1_3"] {
        let (ok, text) = accepts_version(t, modern);
        assert!(ok, "{what} refused {modern}:\n{text}");
    }
    let accepted = accepted_tls12_suites(t);
    assert!(!accepted.is_empty(), "{what}: no TLS 1.2 suite at all");
    let weak: Vec<_> = accepted
        .iter()
        .filter(|s| !is_strong_tls12_suite(s))
        .collect();
    assert!(weak.is_empty(), "{what} accepts weak suites {weak:?}");
    accepted
}
