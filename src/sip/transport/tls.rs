//! TLS for SIP (`sip.listen_tls`): the server configuration built from PEM files, replaced
//! whole on SIGHUP, optional client-certificate verification (mutual TLS), and the client side
//! for the rare connection of our own (a BYE whose dialog's connection is gone).
//!
//! Policy: rustls with `ring`, TLS 1.2 and 1.3, its default suites only (ECDHE key exchange,
//! AES-GCM and ChaCha20-Poly1305; no CBC, no RSA key exchange, no renegotiation).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;

use super::stream::{Stream, Wrap};

/// Where the certificate, its key and the optional client CA are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate, then its chain (Let's Encrypt's `fullchain.pem`).
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: CAs whose client certificates are required (mutual TLS); also trusted, besides
    /// the public roots, for the connections we open.
    pub client_ca: Option<PathBuf>,
}

/// Which of [`TlsFiles`] a problem is with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    Cert,
    Key,
    ClientCa,
}

/// A file that could not serve, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct TlsError {
    pub file: TlsFile,
    pub path: PathBuf,
    pub problem: String,
}

fn err(file: TlsFile, path: &Path, problem: impl ToString) -> TlsError {
    TlsError {
        file,
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(file: TlsFile, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(file, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(file, path, e))?;
    if certs.is_empty() {
        return Err(err(file, path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(TlsFile::ClientCa, path)? {
        roots
            .add(cert)
            .map_err(|e| err(TlsFile::ClientCa, path, e))?;
    }
    Ok(roots)
}

/// Reads the files into a server configuration.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let chain = certs(TlsFile::Cert, &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        let problem = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY in the file".into(),
            e => e.to_string(),
        };
        err(TlsFile::Key, &files.key, problem)
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(TlsFile::Cert, &files.cert, e))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| err(TlsFile::ClientCa, ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).map_err(|e| {
        err(
            TlsFile::Key,
            &files.key,
            format!("does not fit the certificate: {e}"),
        )
    })
}

/// The listener's TLS side: the configuration in force, replaced whole by [`TlsServer::reload`]
/// (connections already open keep theirs).
pub struct TlsServer {
    config: RwLock<Arc<ServerConfig>>,
}

impl TlsServer {
    pub fn new(files: &TlsFiles) -> Result<Arc<TlsServer>, TlsError> {
        Ok(Arc::new(TlsServer {
            config: RwLock::new(Arc::new(server_config(files)?)),
        }))
    }

    /// Reads the files again (a renewed certificate). On error the old configuration stays.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), TlsError> {
        let new = Arc::new(server_config(files)?);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The handshake of each accepted connection, with the configuration in force then.
    pub fn acceptor(self: &Arc<Self>) -> Wrap {
        let server = Arc::clone(self);
        Arc::new(move |socket: TcpStream| {
            let acceptor = tokio_rustls::TlsAcceptor::from(server.current());
            Box::pin(async move {
                let tls = acceptor.accept(socket).await?;
                Ok(Box::new(tls) as Box<dyn Stream>)
            })
        })
    }
}

/// The client configuration for connections we open: the public roots (webpki-roots) and the
/// client CA file's, when there is one. No client certificate of ours is offered.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &files.client_ca {
        roots.roots.extend(self::roots(ca)?.roots);
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(TlsFile::Cert, &files.cert, e))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The handshake of a connection we open to `host` (a name or an IP address, checked against
/// the server's certificate).
pub fn connector(config: Arc<ClientConfig>, host: &str) -> Result<Wrap, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    Ok(Arc::new(move |socket: TcpStream| {
        let connector = connector.clone();
        let name = name.clone();
        Box::pin(async move {
            let tls = connector.connect(name, socket).await?;
            Ok(Box::new(tls) as Box<dyn Stream>)
        })
    }))
}
