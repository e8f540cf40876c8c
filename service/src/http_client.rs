//! A small HTTP(S) client for the services taskpool calls (an identity provider's key set, a
//! process engine's REST API): one request per connection, a size cap and a deadline, TLS
//! through rustls with the system's trusted authorities plus an optional extra one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, HOST};
use hyper::{Method, Request, StatusCode};
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
    Status(StatusCode),
}

/// A whole answer: its status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
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
        let answer = self.request(Method::GET, url, &[], None).await?;
        if answer.status != StatusCode::OK {
            return Err(FetchError::Status(answer.status));
        }
        Ok(answer.body)
    }

    /// Any request, with extra headers and an optional body; the answer whatever its status.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, FetchError> {
        tokio::time::timeout(self.timeout, self.exchange(method, url, headers, body))
            .await
            .map_err(|_| FetchError::Timeout(self.timeout))?
    }

    async fn exchange(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, FetchError> {
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
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, authority)
            .header(ACCEPT, "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
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

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<Answer, FetchError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let exchange = async move {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BYTES)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|_| FetchError::Body)?;
        Ok(Answer { status, body })
    };
    // The connection is driven alongside the exchange and ends with it (one request each).
    let (answer, _) = futures::future::join(exchange, connection).await;
    answer
}
