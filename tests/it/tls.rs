//! TLS and mutual TLS on the listener, with certificates made by the test (rcgen); a bad
//! certificate file refused by `check`; certificates read again on SIGHUP.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::harness::*;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A leaf signed by `ca`: (cert PEM, key PEM, cert DER, key DER).
fn leaf(ca: &Ca, purpose: ExtendedKeyUsagePurpose) -> (String, String, Vec<u8>, Vec<u8>) {
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (
        cert.pem(),
        key.serialize_pem(),
        cert.der().to_vec(),
        key.serialize_der(),
    )
}

fn client(
    ca: &Ca,
    identity: Option<(&[u8], &[u8])>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ureq::Agent {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert.der().to_vec()))
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
            )
            .unwrap(),
    };
    ureq::AgentBuilder::new()
        .tls_config(Arc::new(config))
        .timeout(Duration::from_secs(5))
        .build()
}

const ALL: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

fn write(agent: &ureq::Agent, url: &str) -> Result<u16, String> {
    match agent.post(url).send_string("m v=1i") {
        Ok(r) => Ok(r.status()),
        Err(ureq::Error::Status(code, _)) => Ok(code),
        Err(e) => Err(e.to_string()),
    }
}

fn config(extra: &str) -> String {
    format!(
        r#"
[agent]
  data_dir = "{{dir}}/data"
  omit_hostname = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:0"
  tls_cert = "{{dir}}/server.pem"
  tls_key = "{{dir}}/server.key"
{extra}
[[outputs.file]]
  files = ["{{dir}}/out.lp"]
  buffer = "memory"
"#
    )
}

fn with_certs(ca: &Ca) -> Arc<tempfile::TempDir> {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (cert, key, _, _) = leaf(ca, ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::write(dir.path().join("server.pem"), cert).unwrap();
    std::fs::write(dir.path().join("server.key"), key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    dir
}

#[test]
fn https_serves_writes_and_plain_http_gets_nothing() {
    let ca = new_ca("test ca");
    let dir = with_certs(&ca);
    let agent = TestAgent::start_in(Arc::clone(&dir), &config(""));
    let logged = eventually(Duration::from_secs(5), || {
        agent.logs().contains("scheme=\"https\"")
    });
    assert!(logged, "{}", agent.logs());
    let https = format!("https://{}/write?db=x", agent.addr);
    assert_eq!(write(&client(&ca, None, ALL), &https), Ok(204));
    assert_eq!(
        write(&client(&ca, None, TLS12), &https),
        Ok(204),
        "TLS 1.2 by default"
    );
    // A client that does not trust the issuer refuses the server.
    let other = new_ca("other ca");
    assert!(write(&client(&other, None, ALL), &https).is_err());
    // Plain HTTP on the TLS port is not served.
    assert!(ureq::post(&agent.url("/write?db=x"))
        .timeout(Duration::from_secs(5))
        .send_string("m v=2i")
        .is_err());
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_allowed_cas() {
    let ca = new_ca("test ca");
    let dir = with_certs(&ca);
    let agent = TestAgent::start_in(
        Arc::clone(&dir),
        &config("  tls_allowed_cacerts = [\"{dir}/ca.pem\"]\n  tls_min_version = \"TLS13\""),
    );
    let https = format!("https://{}/write?db=x", agent.addr);
    let (_, _, cert, key) = leaf(&ca, ExtendedKeyUsagePurpose::ClientAuth);
    assert_eq!(
        write(&client(&ca, Some((&cert, &key)), ALL), &https),
        Ok(204)
    );
    // No client certificate: the handshake fails.
    assert!(write(&client(&ca, None, ALL), &https).is_err());
    // A client certificate from another CA: refused too.
    let other = new_ca("other ca");
    let (_, _, cert2, key2) = leaf(&other, ExtendedKeyUsagePurpose::ClientAuth);
    assert!(write(&client(&ca, Some((&cert2, &key2)), ALL), &https).is_err());
    // tls_min_version = TLS13: a TLS 1.2-only client is refused.
    assert!(write(&client(&ca, Some((&cert, &key)), TLS12), &https).is_err());
}

#[test]
fn bad_certificate_files_fail_check_and_certificates_reload_on_sighup() {
    let ca1 = new_ca("first ca");
    let dir = with_certs(&ca1);
    // check: a missing key file is named.
    let bad = config("").replace("{dir}/server.key", "{dir}/missing.key");
    let (code, _, stderr) = check(&bad.replace("{dir}", dir.path().to_str().unwrap()));
    assert_eq!(code, 1);
    assert!(stderr.contains("missing.key"), "{stderr}");
    let (code, _, stderr) = check(
        &config("  tls_min_version = \"TLS10\"").replace("{dir}", dir.path().to_str().unwrap()),
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("TLS 1.2 and 1.3"), "{stderr}");

    let agent = TestAgent::start_in(Arc::clone(&dir), &config(""));
    let https = format!("https://{}/write?db=x", agent.addr);
    assert_eq!(write(&client(&ca1, None, ALL), &https), Ok(204));
    // New certificate from a new CA; SIGHUP; the listener serves it on the same port.
    let ca2 = new_ca("second ca");
    let (cert, key, _, _) = leaf(&ca2, ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::write(dir.path().join("server.pem"), cert).unwrap();
    std::fs::write(dir.path().join("server.key"), key).unwrap();
    signal(&agent.child, "HUP");
    let ok = eventually(Duration::from_secs(10), || {
        write(&client(&ca2, None, ALL), &https) == Ok(204)
    });
    assert!(ok, "{}", agent.logs());
    assert!(write(&client(&ca1, None, ALL), &https).is_err());
    // A broken certificate on reload: refused, the running certificate kept.
    std::fs::write(dir.path().join("server.pem"), "not a certificate").unwrap();
    signal(&agent.child, "HUP");
    let ok = eventually(Duration::from_secs(10), || {
        agent.logs().contains("the running one is kept")
    });
    assert!(ok, "{}", agent.logs());
    assert_eq!(write(&client(&ca2, None, ALL), &https), Ok(204));
}

/// A client that connects and never starts the handshake is dropped after `read_timeout`: it
/// cannot hold a connection slot.
#[test]
fn a_silent_client_is_dropped_after_read_timeout() {
    use std::io::Read;
    let ca = new_ca("test ca");
    let dir = with_certs(&ca);
    let agent = TestAgent::start_in(Arc::clone(&dir), &config("  read_timeout = \"300ms\""));
    let mut silent = std::net::TcpStream::connect(&agent.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server closes the connection");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The listener still serves others.
    let https = format!("https://{}/write?db=x", agent.addr);
    assert_eq!(write(&client(&ca, None, ALL), &https), Ok(204));
}
