//! The TLS client of `SSL_GET`, with keepalived's semantics (`keepalived/check/check_ssl.c`
//! `build_ssl_ctx`, `ssl_connect`): keepalived never asks OpenSSL to verify the real's
//! certificate (it sets no `SSL_VERIFY_PEER`, so even a configured `SSL { ca }` is not
//! enforced), and it sends SNI only when `enable_sni` is set. A health check asks "does this
//! real answer", not "is this the real we meant": any certificate is accepted unless
//! `lb.toml`'s `SSL { verify = true }` (ours) asks for the real's certificate to chain to
//! `ca` for the handshake's name. The handshake's signatures are checked either way, so the
//! peer must hold the key of the certificate it presents.
//!
//! keepalived's `SSL` block gives a client certificate ([`ClientIdentity`]) that every
//! `SSL_GET` presents to a real that asks for one; its `ca` changes nothing, for the reason
//! above.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS client configuration")]
    Config { source: rustls::Error },
    #[error("SSL {key} {path}: {reason}")]
    File {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// The client certificate of keepalived's `SSL` block, read once for every `SSL_GET`.
#[derive(Debug)]
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// Reads the certificate chain (PEM) and the key (PEM: PKCS#8, PKCS#1 or SEC1), from
    /// `key` or, without it, from the certificate's file.
    ///
    /// # Errors
    /// A file cannot be read or holds no certificate or no key.
    pub fn load(
        certificate: &Path,
        key: Option<&Path>,
        password: Option<&str>,
    ) -> Result<Self, TlsError> {
        let bad = |key, path: &Path, reason: String| TlsError::File {
            key,
            path: path.to_owned(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(certificate)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| bad("certificate", certificate, e.to_string()))?;
        if chain.is_empty() {
            return Err(bad("certificate", certificate, "no certificate".into()));
        }
        let (name, path) = key.map_or(("certificate", certificate), |k| ("key", k));
        let key = match password {
            Some(password) => encrypted_key(path, password).map_err(|e| bad(name, path, e))?,
            None => PrivateKeyDer::from_pem_file(path).map_err(|e| {
                bad(
                    name,
                    path,
                    format!("{e} (an unencrypted PKCS#8, PKCS#1 or SEC1 key, or SSL.password)"),
                )
            })?,
        };
        Ok(Self { chain, key })
    }
}

/// The `ENCRYPTED PRIVATE KEY` (PKCS#8, as `openssl pkcs8 -topk8` and OpenSSL 3's
/// `genpkey -aes256` write it) in the PEM file at `path`, decrypted with `password`. The
/// older OpenSSL form (`Proc-Type: 4,ENCRYPTED` headers) is refused with the command that
/// converts it.
fn encrypted_key(path: &Path, password: &str) -> Result<PrivateKeyDer<'static>, String> {
    use pkcs8::der::pem::PemLabel as _;
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(
            "an old-style encrypted key: convert it with `openssl pkcs8 -topk8 -in KEY -out NEW` (PKCS#8)"
                .into(),
        );
    }
    let begin = format!(
        "-----BEGIN {}-----",
        pkcs8::EncryptedPrivateKeyInfo::PEM_LABEL
    );
    let end = format!(
        "-----END {}-----",
        pkcs8::EncryptedPrivateKeyInfo::PEM_LABEL
    );
    let block = text
        .find(&begin)
        .and_then(|start| {
            let stop = text[start..].find(&end)? + start + end.len();
            Some(&text[start..stop])
        })
        .ok_or("no ENCRYPTED PRIVATE KEY block (SSL.password is for an encrypted PKCS#8 key)")?;
    let (_, document) =
        pkcs8::der::SecretDocument::from_pem(block).map_err(|e| format!("reading the key: {e}"))?;
    let info: pkcs8::EncryptedPrivateKeyInfo<'_> = document
        .decode_msg()
        .map_err(|e| format!("reading the key: {e}"))?;
    let plain = info
        .decrypt(password)
        .map_err(|e| format!("decrypting the key with SSL.password: {e}"))?;
    Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()))
}

/// The trusted certificates of `SSL { ca }` (PEM), for `verify`.
///
/// # Errors
/// The file cannot be read or holds no usable certificate.
pub fn roots(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let bad = |reason: String| TlsError::File {
        key: "ca",
        path: ca.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| bad(e.to_string()))?;
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no usable certificate".into()));
    }
    Ok(store)
}

/// How `SSL_GET` wraps its connection.
#[derive(Clone)]
pub struct Tls {
    pub connector: TlsConnector,
    /// `enable_sni`: send the url's virtual host as the server name.
    pub sni: bool,
}

// By hand: rustls's connector does not implement Debug, and its configuration says nothing
// a log reader needs.
impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("sni", &self.sni)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// keepalived's client: any certificate (or, with `roots`, only one that chains to them
    /// for the name the handshake is for), SNI as `sni` says, and `client`'s certificate
    /// for a real that asks for one.
    ///
    /// # Errors
    /// The TLS library refuses its configuration (no protocol version, or a key that does
    /// not suit the certificate).
    pub fn new(
        sni: bool,
        client: Option<&ClientIdentity>,
        roots: Option<Arc<rustls::RootCertStore>>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Config { source })?;
        let builder = match roots {
            Some(roots) => versions.with_root_certificates(roots),
            None => versions
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
        };
        let config = match client {
            Some(c) => builder
                .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
                .map_err(|source| TlsError::Config { source })?,
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            sni,
        })
    }

    /// The name the handshake is for. rustls never sends an IP address as SNI, so the
    /// connected address stands for "no SNI".
    ///
    /// # Errors
    /// With `enable_sni`, the virtual host's name is not a DNS name.
    pub fn server_name(
        &self,
        virtualhost: Option<&str>,
        to: IpAddr,
    ) -> Result<ServerName<'static>, String> {
        match virtualhost.filter(|_| self.sni) {
            Some(host) => ServerName::try_from(host_part(host).to_owned())
                .map_err(|e| format!("virtualhost {host:?} as SNI: {e}")),
            None => Ok(ServerName::IpAddress(to.into())),
        }
    }
}

/// The host of a `Host:` value, without its port (`www.example:8443`, `[2001:db8::1]:443`).
fn host_part(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(host, |(ip, _)| ip);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Accepts any certificate, as keepalived does; see the module's comment.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_is_the_virtual_host_without_its_port_and_only_when_enabled() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let on = Tls::new(true, None, None).unwrap();
        let off = Tls::new(false, None, None).unwrap();
        let name = |t: &Tls, h| t.server_name(h, ip).unwrap().to_str().into_owned();
        assert_eq!(name(&on, Some("www.example:8443")), "www.example");
        assert_eq!(name(&on, Some("www.example")), "www.example");
        assert_eq!(name(&on, None), "127.0.0.1");
        assert_eq!(name(&off, Some("www.example")), "127.0.0.1");
        assert_eq!(name(&on, Some("[2001:db8::1]:443")), "2001:db8::1");
        assert!(on.server_name(Some("bad name"), ip).is_err());
    }
}
