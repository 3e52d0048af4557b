//! The TLS client configuration for `rediss://`: the public roots (webpki-roots, as the redis
//! crate's `tls-rustls-webpki-roots` feature uses), or only the CA of `FAILPROBE_TLS_CA_FILE`;
//! `#insecure` skips verification. failprobe opens the TLS stream itself so that every reply
//! passes `guard` like a plain one.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

pub(crate) fn client_config(ca_pem: Option<&[u8]>, insecure: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("FAILPROBE_TLS_CA_FILE: not a PEM certificate: {e}"))?;
                roots.add(cert).map_err(|e| format!("FAILPROBE_TLS_CA_FILE: {e}"))?;
            }
            if roots.is_empty() {
                return Err("FAILPROBE_TLS_CA_FILE holds no certificate".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    if insecure {
        // As the redis crate does for #insecure: no verification, no SNI.
        config.enable_sni = false;
        let supported = provider.signature_verification_algorithms;
        config.dangerous().set_certificate_verifier(Arc::new(NoVerification { supported }));
    }
    Ok(Arc::new(config))
}

/// The server name the certificate must carry (the host as given, or an IP address).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("`{host}` cannot be a TLS server name: {e}"))
}

#[derive(Debug)]
struct NoVerification {
    supported: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.supported.supported_schemes()
    }
}
