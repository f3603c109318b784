//! `[sip]`'s stream transports: `listen_tcp`, and `listen_tls` with its certificate, key and
//! optional client CA (mutual TLS). TCP listens on the UDP address unless `listen_tcp = "off"`;
//! TLS as soon as a certificate is given (on the SIP address's IP, port 5061, unless
//! `listen_tls` says otherwise).

use std::net::SocketAddr;

use toml::Spanned;

use super::raw::Sip as RawSip;
use super::Ctx;
use crate::sip::transport::tls::{self, TlsFile, TlsFiles};

/// The stream listeners of a config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamListeners {
    pub tcp: Option<SocketAddr>,
    /// The TLS listener and its files, checked readable and consistent at load.
    pub tls: Option<(SocketAddr, TlsFiles)>,
}

pub(super) fn resolve(ctx: &mut Ctx<'_>, raw: &RawSip, udp: SocketAddr) -> StreamListeners {
    // RFC 3261 §18 has every element take TCP beside UDP, on the same port: a peer may switch
    // to TCP for a message too large for a datagram. "off" turns it off.
    let tcp = match &raw.listen_tcp {
        None => Some(udp),
        Some(v) if v.get_ref() == "off" => None,
        Some(_) => ctx.listen(&raw.listen_tcp, "sip.listen_tcp", "0.0.0.0:5060"),
    };
    let path = |v: &Option<Spanned<String>>| v.as_ref().map(|p| ctx.base_dir.join(p.get_ref()));
    let (cert, key, client_ca) = (
        path(&raw.tls_cert),
        path(&raw.tls_key),
        path(&raw.tls_client_ca),
    );
    let tls_listen = ctx.listen(&raw.listen_tls, "sip.listen_tls", "0.0.0.0:5061");
    let tls = match (cert, key) {
        (None, None) => {
            let stray = [
                (&raw.listen_tls, "sip.listen_tls"),
                (&raw.tls_client_ca, "sip.tls_client_ca"),
            ];
            for (v, k) in stray {
                if let Some(v) = v {
                    ctx.problem(v.span(), k, "needs sip.tls_cert and sip.tls_key");
                }
            }
            None
        }
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert,
                key,
                client_ca,
            };
            // Read now, so check-config and a reload catch a bad file, naming its key.
            match tls::server_config(&files) {
                Ok(_) => Some((tls_listen.unwrap_or(SocketAddr::new(udp.ip(), 5061)), files)),
                Err(e) => {
                    let (v, k) = match e.file {
                        TlsFile::Cert => (&raw.tls_cert, "sip.tls_cert"),
                        TlsFile::Key => (&raw.tls_key, "sip.tls_key"),
                        TlsFile::ClientCa => (&raw.tls_client_ca, "sip.tls_client_ca"),
                    };
                    if let Some(v) = v {
                        ctx.problem(v.span(), k, e.to_string());
                    }
                    None
                }
            }
        }
        (Some(_), None) => {
            if let Some(v) = &raw.tls_cert {
                ctx.problem(v.span(), "sip.tls_cert", "needs sip.tls_key");
            }
            None
        }
        (None, Some(_)) => {
            if let Some(v) = &raw.tls_key {
                ctx.problem(v.span(), "sip.tls_key", "needs sip.tls_cert");
            }
            None
        }
    };
    StreamListeners { tcp, tls }
}
