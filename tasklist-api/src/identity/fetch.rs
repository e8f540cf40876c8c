//! A small HTTP(S) GET for documents an identity provider publishes (its key set): one request
//! per connection, a size cap and a deadline, TLS through rustls with the system's trusted
//! authorities plus an optional extra one.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::header::{ACCEPT, HOST};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest document accepted.
const MAX_BYTES: usize = 1024 * 1024;

/// Why a document could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} is not an http or https URL")]
    Url(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed")]
    Connect(#[source] std::io::Error),
    #[error("TLS: the certificate authority file cannot be read")]
    Authority(#[source] rustls::pki_types::pem::Error),
    #[error("HTTP exchange failed")]
    Http(#[from] hyper::Error),
    #[error("the answer is larger than {MAX_BYTES} bytes or broken")]
    Body,
    #[error("the server answered {0}")]
    Status(hyper::StatusCode),
}

/// Fetches HTTP(S) documents; `extra_authority` is a PEM file of one more trusted authority.
#[derive(Clone)]
pub struct Fetcher {
    tls: TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Fetcher {
    pub fn new(extra_authority: Option<&str>, timeout: Duration) -> Result<Fetcher, FetchError> {
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates are skipped: the extra authority may be all we need.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = extra_authority {
            for certificate in rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(FetchError::Authority)?
            {
                roots.add_parsable_certificates([certificate.map_err(FetchError::Authority)?]);
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Fetcher {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// The body of a `200` answer to `GET url`.
    pub async fn get(&self, url: &str) -> Result<Bytes, FetchError> {
        tokio::time::timeout(self.timeout, self.exchange(url))
            .await
            .map_err(|_| FetchError::Timeout(self.timeout))?
    }

    async fn exchange(&self, url: &str) -> Result<Bytes, FetchError> {
        let invalid = || FetchError::Url(url.to_string());
        let uri: hyper::Uri = url.parse().map_err(|_| invalid())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid()),
        };
        let host = uri.host().ok_or_else(invalid)?.to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().ok_or_else(invalid)?.to_string();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let request = Request::get(path)
            .header(HOST, authority)
            .header(ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|_| invalid())?;
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(FetchError::Connect)?;
        if https {
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|_| invalid())?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(FetchError::Connect)?;
            send(tls, request).await
        } else {
            send(tcp, request).await
        }
    }
}

async fn send<T>(io: T, request: Request<Empty<Bytes>>) -> Result<Bytes, FetchError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let exchange = async move {
        let response = sender.send_request(request).await?;
        if response.status() != hyper::StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        Limited::new(response.into_body(), MAX_BYTES)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|_| FetchError::Body)
    };
    // The connection is driven alongside the exchange and ends with it (one request each).
    let (body, _) = futures::future::join(exchange, connection).await;
    body
}
