//! TLS in front of the plain-http fakes, for tests that run the production profile (which
//! refuses plain http for anything that carries or vouches for a secret).
//!
//! [`TestCa`] is a throwaway certificate authority made at test time and one leaf certificate it
//! signed for the addresses the test serves on; its PEM file is what the app under test trusts
//! (`SSL_CERT_FILE`). [`TlsProxy`] accepts TLS with that leaf and relays the plaintext to a fake
//! over TCP, so the fakes stay as they are.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority that exists for one test, and a server certificate it issued.
pub struct TestCa {
    /// The CA certificate alone, PEM: what `SSL_CERT_FILE` points at.
    pub ca_file: PathBuf,
    acceptor: TlsAcceptor,
    _dir: tempfile::TempDir,
}

impl TestCa {
    /// A CA and one leaf certificate valid for each of `addresses` (IP subject alternative
    /// names: the fakes listen on addresses, not names).
    pub fn new(addresses: &[IpAddr]) -> TestCa {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Passkey test CA (throwaway)");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let ca = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = addresses.iter().map(|ip| ip.to_string()).collect();
        let mut leaf_params = CertificateParams::new(names).expect("leaf params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "passkey test fakes");
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &ca)
            .expect("leaf certificate");

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("test-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();

        let chain = vec![
            CertificateDer::from(leaf_cert.der().to_vec()),
            CertificateDer::from(ca_cert.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        TestCa {
            ca_file,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            _dir: dir,
        }
    }
}

/// Accepts TLS on `ip` and relays each connection to a plain-http fake. Runs until the test's
/// runtime ends.
pub struct TlsProxy {
    pub addr: SocketAddr,
}

impl TlsProxy {
    /// A proxy on `ip` (port chosen by the system) in front of the fake at `target`.
    pub async fn start(ca: &TestCa, ip: IpAddr, target: SocketAddr) -> TlsProxy {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = ca.acceptor.clone();
        tokio::spawn(async move {
            loop {
                let Ok((incoming, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that gives up mid-handshake or mid-body just ends its connection.
                    let Ok(mut tls) = acceptor.accept(incoming).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsProxy { addr }
    }

    /// `https://{addr}`.
    pub fn base(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// The host and port of an `http://host:port/...` URL a fake reported.
pub fn socket_of(url: &str) -> SocketAddr {
    let parsed = reqwest::Url::parse(url).expect("a fake's URL");
    let host: IpAddr = parsed
        .host_str()
        .expect("a host")
        .parse()
        .expect("fakes listen on IP addresses");
    SocketAddr::new(host, parsed.port().expect("a port"))
}

/// This machine's address on its default route, when it has one that is not loopback: where a
/// Connector must be for production to send it the bot's token.
pub fn outside_address() -> Option<IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
