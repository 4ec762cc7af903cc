//! TLS for listeners with rustls: a certificate chain and key (`tls_cert`, `tls_key`), optional
//! client certificates checked against `tls_allowed_cacerts` (mutual TLS), and a minimum
//! version (`tls_min_version`: `"TLS12"` (default) or `"TLS13"`).
//!
//! Certificates are read when the config loads, so `heliograph check` and a reload find a
//! missing or bad file before anything changes; a reload reads them again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// The TLS keys of a listener's table, as written (Telegraf's names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates; when set, clients must present a certificate they signed.
    #[serde(default)]
    pub tls_allowed_cacerts: Vec<PathBuf>,
    /// `"TLS12"` (default) or `"TLS13"`.
    pub tls_min_version: Option<String>,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

impl TlsConfig {
    /// Whether TLS is configured at all.
    pub fn is_set(&self) -> bool {
        self.tls_cert.is_some()
            || self.tls_key.is_some()
            || !self.tls_allowed_cacerts.is_empty()
            || self.tls_min_version.is_some()
    }

    /// Reads the files and builds the server side, or `None` without TLS.
    ///
    /// # Errors
    /// What is wrong, naming the key or the file.
    pub fn server(&self) -> Result<Option<Arc<ServerConfig>>, String> {
        if !self.is_set() {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Err("TLS needs both `tls_cert` and `tls_key`".into());
        };
        let versions: &[&rustls::SupportedProtocolVersion] = match self.tls_min_version.as_deref() {
            None | Some("TLS12") => &[&rustls::version::TLS13, &rustls::version::TLS12],
            Some("TLS13") => &[&rustls::version::TLS13],
            Some(v @ ("TLS10" | "TLS11")) => {
                return Err(format!(
                    "`tls_min_version = {v:?}` is not supported: heliograph speaks TLS 1.2 and 1.3"
                ))
            }
            Some(other) => {
                return Err(format!(
                    "`tls_min_version = {other:?}`: use \"TLS12\" or \"TLS13\""
                ))
            }
        };
        let chain = certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("{}: no usable private key: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = if self.tls_allowed_cacerts.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            for path in &self.tls_allowed_cacerts {
                for ca in certs(path)? {
                    roots.add(ca).map_err(|e| {
                        format!("{}: not a usable CA certificate: {e}", path.display())
                    })?;
                }
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("`tls_allowed_cacerts`: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("`tls_cert` and `tls_key` do not make a usable pair: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }
}
